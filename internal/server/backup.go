package server

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// backupWriteTime bounds how long one backup download may take: the copy
// holds a read transaction open for as long as the client reads.
const backupWriteTime = 10 * time.Minute

// BackupTxidTrailer is the HTTP trailer of GET /v1/backup that names the
// gallery transaction the copy holds; it is absent when the copy failed.
const BackupTxidTrailer = "Facever-Backup-Txid"

// backup streams a consistent copy of the gallery (one read transaction's
// view, bbolt's tx.WriteTo) while the server goes on serving: the hot backup
// that `facever gallery backup --server` saves and checks. A copy cut short
// (the client or the server went away) is refused by the saver's check.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) error {
	if err := r.Context().Err(); err != nil {
		return err
	}
	copier, ok := s.cfg.Gallery.(interface {
		CopyTo(io.Writer) (int64, uint64, error)
	})
	if !ok {
		return &apiError{http.StatusNotImplemented, "not_implemented", "this server's gallery is not a file: back up its database with the database's own tools (pg_dump for PostgreSQL)"}
	}
	// The server's write timeout is sized for answers, not for a whole
	// gallery file.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupWriteTime))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="gallery-backup.db"`)
	w.Header().Set("Cache-Control", "no-store")
	// The transaction copied is known once the copy has started: it comes
	// as a trailer, read by the client after the body.
	w.Header().Set("Trailer", BackupTxidTrailer)
	hw := &headerOnWrite{w: w}
	_, txid, err := copier.CopyTo(hw)
	if err != nil && !hw.wrote {
		return err // nothing sent yet: a proper error answer
	}
	if err == nil {
		w.Header().Set(BackupTxidTrailer, strconv.FormatUint(txid, 10))
	}
	return nil
}

// headerOnWrite sends the 200 header with the first bytes of the copy, so
// that a copy that fails before any byte still gets an error answer.
type headerOnWrite struct {
	w     http.ResponseWriter
	wrote bool
}

func (h *headerOnWrite) Write(p []byte) (int, error) {
	if !h.wrote {
		h.wrote = true
		h.w.WriteHeader(http.StatusOK)
	}
	return h.w.Write(p)
}
