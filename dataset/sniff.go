package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/facever/facever/internal/imageformat"
)

// errEmpty marks a file of zero bytes.
var errEmpty = errors.New("empty file")

// SniffFile reads the first imageformat.SniffLen bytes of a regular file and
// returns its image format as imageformat.Sniff names it ("" when it is not an
// image). A photo is what imageformat.Sniff recognises, whatever the file's name
// and whether or not the decoder reads that format: a HEIC photo is a photo,
// refused later by the decoder with advice on converting it, never silently
// left out. SniffFile refuses what is not a regular file (a FIFO would
// block the walk).
func SniffFile(path string) (string, error) {
	st, err := os.Stat(path) // before opening: opening a FIFO blocks
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var buf [imageformat.SniffLen]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	if n == 0 {
		return "", errEmpty
	}
	format, _ := imageformat.Sniff(buf[:n])
	return format, nil
}
