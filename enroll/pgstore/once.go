package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// onceLookup returns the live record of key, if any.
func onceLookup(ctx context.Context, q querier, key string, at time.Time) (enroll.OnceRecord, bool, error) {
	var rec enroll.OnceRecord
	err := q.QueryRow(ctx, "SELECT digest, status, body, created FROM facever.once WHERE key = $1", key).Scan(&rec.Digest, &rec.Status, &rec.Body, &rec.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return enroll.OnceRecord{}, false, nil
	}
	if err != nil {
		return enroll.OnceRecord{}, false, err
	}
	rec.Created = rec.Created.UTC()
	if at.Sub(rec.Created) > enroll.OnceTTL {
		return enroll.OnceRecord{}, false, nil
	}
	return rec, true, nil
}

// LookupOnce returns the record of idempotency key key, when it is
// remembered (ok false otherwise: never used, or older than enroll.OnceTTL).
func (s *Store) LookupOnce(key string) (rec enroll.OnceRecord, ok bool, err error) {
	if err := enroll.CheckOnceKey(key); err != nil {
		return enroll.OnceRecord{}, false, err
	}
	err = s.read("look up idempotency key", func(ctx context.Context, tx pgx.Tx) error {
		rec, ok, err = onceLookup(ctx, tx, key, time.Now())
		return err
	})
	return rec, ok, err
}

// AddTemplatesOnce is AddTemplates named by idempotency key key, for the
// request whose digest is digest, as the file does: a remembered key with
// the same digest replays its record (replay true) and writes nothing,
// with another digest fails with enroll.ErrOnceMismatch; otherwise the
// templates, answer's record and the key commit together. Expired keys
// are forgotten, up to 100 per call.
func (s *Store) AddTemplatesOnce(id uint64, ts []enroll.Template, key, digest string, answer func(enroll.Identity, []enroll.Template) (int, []byte, error)) (rec enroll.OnceRecord, replay bool, err error) {
	if err := enroll.CheckOnceKey(key); err != nil {
		return enroll.OnceRecord{}, false, err
	}
	err = s.write("add templates", func(w *wtx) error {
		rec, replay = enroll.OnceRecord{}, false // (a retried transaction)
		at := now()
		old, ok, err := onceLookup(w.ctx, w, key, at)
		if err != nil {
			return err
		}
		if ok {
			if old.Digest != digest {
				return fmt.Errorf("%w (key %q, first used %s)", enroll.ErrOnceMismatch, key, old.Created.Format(time.RFC3339))
			}
			rec, replay = old, true
			return nil
		}
		it, err := getIdentity(w.ctx, w, id)
		if err != nil {
			return err
		}
		saved, err := s.addTemplates(w, &it, ts)
		if err != nil {
			return err
		}
		status, body, err := answer(it, saved)
		if err != nil {
			return err
		}
		rec = enroll.OnceRecord{Digest: digest, Status: status, Body: body, Created: at}
		if _, err := w.Exec(w.ctx, `DELETE FROM facever.once WHERE key IN
			(SELECT key FROM facever.once WHERE created < $1 ORDER BY created LIMIT 100)`, at.Add(-enroll.OnceTTL)); err != nil {
			return err
		}
		_, err = w.Exec(w.ctx, `INSERT INTO facever.once (key, digest, status, body, created) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, status = excluded.status, body = excluded.body, created = excluded.created`,
			key, digest, status, body, at)
		return err
	})
	return rec, replay, err
}
