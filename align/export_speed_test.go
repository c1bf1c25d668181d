package align

import "image"

// DetectTilesBoth runs the detector over every tile of im's pyramid (as
// Detect reads a photo of more than padLimit pixels) twice: through
// detectTiles, and one tile after another on the calling goroutine. It
// returns both lists of boxes and the number of tiles.
func DetectTilesBoth(a *Aligner, im *Image) (pipelined, serial []Face, n int, err error) {
	w, h := im.Width(), im.Height()
	all := image.Rect(0, 0, w, h)
	var ts []tileRect
	for _, lv := range pyramid(w, h, all, DefaultSmallestFace) {
		ts = append(ts, tiles(w, h, all, lv, false)...)
	}
	if pipelined, err = a.detectTiles(im.Mat, ts); err != nil {
		return nil, nil, 0, err
	}
	for _, t := range ts {
		c, err := a.detectTile(im.Mat, t)
		if err != nil {
			return nil, nil, 0, err
		}
		serial = append(serial, c...)
	}
	return pipelined, serial, len(ts), nil
}
