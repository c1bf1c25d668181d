package pgstore

import (
	"context"
	"fmt"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// checkCrops checks the crop of each template (enroll.CheckCrop), before
// anything of them is written.
func checkCrops(ts []enroll.Template) error {
	for i, t := range ts {
		if err := enroll.CheckCrop(t.Crop); err != nil {
			return fmt.Errorf("template %d: %w", i, err)
		}
	}
	return nil
}

// writeCrops stores the crops of the templates ts, whose ids are ids, in
// the write's transaction (those without a crop have no row).
func writeCrops(w *wtx, ids []int64, ts []enroll.Template) error {
	var tids []int64
	var jpegs [][]byte
	for i, t := range ts {
		if len(t.Crop) > 0 {
			tids, jpegs = append(tids, ids[i]), append(jpegs, t.Crop)
		}
	}
	if len(tids) == 0 {
		return nil
	}
	_, err := w.Exec(w.ctx, `INSERT INTO facever.template_crops (template_id, jpeg)
		SELECT * FROM unnest($1::int8[], $2::bytea[])`, tids, jpegs)
	return err
}

// TemplateCrop returns the JPEG crop kept for template tid of identity id:
// enroll.ErrNotFound when the identity is absent, enroll.ErrTemplateNotFound
// when it has no such template, enroll.ErrNoCrop when the template has no
// crop. It reads the database, so a crop written through another Store
// (another node) is seen at once.
func (s *Store) TemplateCrop(id, tid uint64) ([]byte, error) {
	iid, ok := dbID(id)
	if !ok {
		return nil, fmt.Errorf("%w: id %d", enroll.ErrNotFound, id)
	}
	t, ok := dbID(tid)
	if !ok {
		t = 0 // no template has it: the identity is still looked up
	}
	var jpeg []byte
	err := s.read("template crop", func(ctx context.Context, tx pgx.Tx) error {
		var identity, template bool
		var size *int64
		// The image only when it is within the bound (a row written
		// around this package is not read whole).
		err := tx.QueryRow(ctx, `SELECT i.id IS NOT NULL, t.id IS NOT NULL, octet_length(c.jpeg),
			CASE WHEN octet_length(c.jpeg) <= $3 THEN c.jpeg END
			FROM (SELECT 1) one
			LEFT JOIN facever.identities i ON i.id = $1
			LEFT JOIN facever.templates t ON t.id = $2 AND t.identity_id = i.id
			LEFT JOIN facever.template_crops c ON c.template_id = t.id`,
			iid, t, enroll.MaxCropBytes).Scan(&identity, &template, &size, &jpeg)
		switch {
		case err != nil:
			return err
		case !identity:
			return fmt.Errorf("%w: id %d", enroll.ErrNotFound, id)
		case !template:
			return fmt.Errorf("%w: no template %d in identity %d", enroll.ErrTemplateNotFound, tid, id)
		case size == nil:
			return fmt.Errorf("%w: template %d of identity %d", enroll.ErrNoCrop, tid, id)
		}
		if len(jpeg) == 0 || enroll.CheckCrop(jpeg) != nil {
			return fmt.Errorf("%w: the crop of template %d of identity %d (%d bytes) is not a JPEG of at most %d bytes",
				enroll.ErrCorrupt, tid, id, *size, enroll.MaxCropBytes)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return jpeg, nil
}
