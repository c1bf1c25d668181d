package facever

import (
	"errors"
	"io/fs"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
)

// Stable codes of the errors that make one photo unusable, the same in the
// CLI's per-photo error entries ({"path": ..., "error": {"code": ...,
// "message": ...}}) and, where they mean the same, in the HTTP server's
// error answers (too_large, unsupported_format, not_image, no_face,
// multiple_faces, face_too_small, bad_landmarks). PhotoErrorCode derives them from the sentinel errors.
const (
	// CodeNotFound: the file does not exist (fs.ErrNotExist).
	CodeNotFound = "not_found"
	// CodeUnreadable: the file exists but cannot be read (permission, I/O
	// error, a folder).
	CodeUnreadable = "unreadable"
	// CodeUnsupportedFormat: an image format facever recognises but does
	// not decode, such as HEIC (align.ErrUnsupported), in the CLI and the
	// server alike.
	CodeUnsupportedFormat = "unsupported_format"
	// CodeNotImage: not an image, or a truncated or corrupt one, or one too
	// small to hold a face (align.ErrNotImage, align.ErrTooSmall).
	CodeNotImage = "not_image"
	// CodeTooLarge: the file or its pixel count is over the limits
	// (align.ErrTooLarge).
	CodeTooLarge = "too_large"
	// CodeNoFace: no face was found (align.ErrNoFace).
	CodeNoFace = "no_face"
	// CodeMultipleFaces: several faces where one is needed
	// (align.ErrMultipleFaces).
	CodeMultipleFaces = "multiple_faces"
	// CodeFaceTooSmall: the face is below the enrollment minimum
	// (ErrFaceTooSmall).
	CodeFaceTooSmall = "face_too_small"
	// CodeBadLandmarks: the face's landmarks cannot be aligned
	// (align.ErrDegenerate).
	CodeBadLandmarks = "bad_landmarks"
	// CodeDuplicatePhoto: the same photo (same content) is enrolled under
	// another person (enroll.ErrDuplicatePhoto).
	CodeDuplicatePhoto = "duplicate_photo"
)

// PhotoErrorCode returns the stable code of an error that is one photo's
// fault (see the Code constants), or "" for any other error (a model that
// fails, a gallery that cannot be written), which should stop a batch
// rather than be reported against a photo.
func PhotoErrorCode(err error) string {
	var pe *fs.PathError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, fs.ErrNotExist):
		return CodeNotFound
	case errors.Is(err, align.ErrUnsupported):
		return CodeUnsupportedFormat
	case errors.Is(err, align.ErrNotImage), errors.Is(err, align.ErrTooSmall):
		return CodeNotImage
	case errors.Is(err, align.ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, align.ErrNoFace):
		return CodeNoFace
	case errors.Is(err, align.ErrMultipleFaces):
		return CodeMultipleFaces
	case errors.Is(err, ErrFaceTooSmall):
		return CodeFaceTooSmall
	case errors.Is(err, align.ErrDegenerate):
		return CodeBadLandmarks
	case errors.Is(err, enroll.ErrDuplicatePhoto):
		return CodeDuplicatePhoto
	case errors.Is(err, fs.ErrPermission), errors.As(err, &pe):
		return CodeUnreadable
	}
	return ""
}
