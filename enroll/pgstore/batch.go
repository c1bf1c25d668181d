package pgstore

import (
	"fmt"

	"github.com/facever/facever/enroll"
)

// EnrollBatch adds the items' templates to their identities (created as
// needed, without metadata), all in one transaction, as the file does: an
// item whose photo is already a template of its identity is skipped
// (enroll.ErrAlreadyEnrolled); one whose photo is a template of another
// identity is refused (enroll.ErrDuplicatePhoto) unless allowDuplicates.
// The error is for the transaction (nothing was written); per-item outcomes
// are in the results.
func (s *Store) EnrollBatch(items []enroll.BatchItem, allowDuplicates bool) ([]enroll.BatchResult, error) {
	res := make([]enroll.BatchResult, len(items))
	err := s.write("enroll batch", func(w *wtx) error {
		byNorm := map[string]*enroll.Identity{}
		ids := make([]*enroll.Identity, len(items))
		for i := range res {
			res[i] = enroll.BatchResult{}
		}
		for i, item := range items {
			name, err := enroll.NormalizeName(item.Name)
			if err != nil {
				return fmt.Errorf("%q: %w", item.Name, err)
			}
			it := byNorm[name]
			if it == nil {
				found, ok, err := byName(w.ctx, w, name)
				if err != nil {
					return err
				}
				if ok {
					it = &found
					byNorm[name] = it
				}
			}
			t := item.Template
			if t.PhotoSHA256 != "" {
				held, other, err := photoHolders(w, t.PhotoSHA256, it)
				if err != nil {
					return err
				}
				switch {
				case held != nil:
					res[i] = enroll.BatchResult{Template: *held, Err: fmt.Errorf("%w (template #%d)", enroll.ErrAlreadyEnrolled, held.ID)}
					ids[i] = it
					continue
				case other != nil && !allowDuplicates:
					owner, err := getIdentity(w.ctx, w, other.IdentityID)
					if err != nil {
						return err
					}
					res[i] = enroll.BatchResult{Template: *other, Err: fmt.Errorf("%w: template #%d of %q", enroll.ErrDuplicatePhoto, other.ID, owner.Name)}
					ids[i] = it
					continue
				}
			}
			if it == nil {
				created, err := s.createIdentity(w, name, nil)
				if err != nil {
					return err
				}
				it = &created
				byNorm[name] = it
			}
			out, err := s.addTemplates(w, it, []enroll.Template{t})
			if err != nil {
				return fmt.Errorf("%s: %w", item.Template.Source, err)
			}
			res[i].Template = out[0]
			ids[i] = it
		}
		for i, it := range ids {
			if it != nil {
				res[i].Identity = *it
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// photoHolders finds the templates holding the photo: the first of
// identity it (nil: none yet) and the first of any other identity.
func photoHolders(w *wtx, sha256hex string, it *enroll.Identity) (held, other *enroll.Template, err error) {
	sha, err := checkSHA(sha256hex)
	if err != nil {
		return nil, nil, err
	}
	ts, err := templates(w.ctx, w, "SELECT "+templateCols+templateFrom+"WHERE t.photo_sha256 = $1 ORDER BY t.identity_id, t.id", sha)
	if err != nil {
		return nil, nil, err
	}
	for i := range ts {
		t := &ts[i]
		if it != nil && t.IdentityID == it.ID {
			if held == nil {
				held = t
			}
		} else if other == nil {
			other = t
		}
	}
	return held, other, nil
}
