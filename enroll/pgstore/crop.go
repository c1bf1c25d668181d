package pgstore

import "github.com/facever/facever/enroll"

// TemplateCrop returns the JPEG crop kept for template tid of identity id.
// PLACEHOLDER (crops-pg replaces it): no crops are kept yet.
func (s *Store) TemplateCrop(id, tid uint64) ([]byte, error) {
	return nil, enroll.ErrNoCrop
}
