package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// CreateAPIKey makes a new random admin key (256 bits) for name, stores
// its sha256, and returns the key: it cannot be recovered later.
func (s *Store) CreateAPIKey(name string) (string, enroll.APIKey, error) {
	return s.CreateScopedAPIKey(name, []string{enroll.ScopeAdmin})
}

// CreateScopedAPIKey is CreateAPIKey for a key with the given scopes
// (enroll.ErrInvalid for none or an unknown one).
func (s *Store) CreateScopedAPIKey(name string, scopes []string) (string, enroll.APIKey, error) {
	name, err := enroll.NormalizeName(name)
	if err != nil {
		return "", enroll.APIKey{}, err
	}
	if scopes, err = enroll.CheckScopes(scopes); err != nil {
		return "", enroll.APIKey{}, err
	}
	if s.opts.ReadOnly {
		return "", enroll.APIKey{}, enroll.ErrReadOnly
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", enroll.APIKey{}, err
	}
	key := enroll.APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	rec := enroll.APIKey{Name: name, Prefix: key[:len(enroll.APIKeyPrefix)+6], Created: now(), Scopes: scopes}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.pool.Exec(ctx, "INSERT INTO facever.api_keys (hash, name, prefix, created, scopes) VALUES ($1, $2, $3, $4, $5)",
		enroll.HashAPIKey(key), rec.Name, rec.Prefix, rec.Created, rec.Scopes); err != nil {
		return "", enroll.APIKey{}, s.wrap("create API key", err)
	}
	return key, rec, nil
}

func scanKey(row pgx.Row) (enroll.APIKey, error) {
	var k enroll.APIKey
	err := row.Scan(&k.Name, &k.Prefix, &k.Created, &k.Scopes)
	k.Created = k.Created.UTC()
	return k, err
}

// CheckAPIKey reports the key's record, or enroll.ErrBadKey.
func (s *Store) CheckAPIKey(key string) (enroll.APIKey, error) {
	if !strings.HasPrefix(key, enroll.APIKeyPrefix) || len(key) > 200 {
		return enroll.APIKey{}, enroll.ErrBadKey
	}
	var rec enroll.APIKey
	err := s.read("check API key", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		rec, err = scanKey(tx.QueryRow(ctx, "SELECT name, prefix, created, scopes FROM facever.api_keys WHERE hash = $1", enroll.HashAPIKey(key)))
		if errors.Is(err, pgx.ErrNoRows) {
			return enroll.ErrBadKey
		}
		return err
	})
	return rec, err
}

// APIKeys lists the keys (without the keys themselves).
func (s *Store) APIKeys() ([]enroll.APIKey, error) {
	var out []enroll.APIKey
	err := s.read("list API keys", func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT name, prefix, created, scopes FROM facever.api_keys ORDER BY hash")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// RevokeAPIKey deletes every key whose prefix is prefix, and returns how
// many.
func (s *Store) RevokeAPIKey(prefix string) (int, error) {
	if s.opts.ReadOnly {
		return 0, enroll.ErrReadOnly
	}
	if !utf8.ValidString(prefix) || strings.IndexByte(prefix, 0) >= 0 {
		return 0, nil // no key has such a prefix (text cannot hold it)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	tag, err := s.pool.Exec(ctx, "DELETE FROM facever.api_keys WHERE prefix = $1", prefix)
	if err != nil {
		return 0, s.wrap("revoke API key", err)
	}
	return int(tag.RowsAffected()), nil
}
