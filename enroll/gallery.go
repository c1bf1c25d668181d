// Package enroll keeps the gallery: the people enrolled in facever, their
// templates (one embedding per enrolled photo), and 1:N search over them.
//
// # Storage
//
// The gallery is one bbolt file (go.etcd.io/bbolt). bbolt was chosen over
// SQLite and the alternatives because it is
//
//   - a single file, easy to copy, back up and protect (created 0600:
//     templates are biometric data);
//   - ACID: every change is one transaction, committed by writing a new
//     copy-on-write B+tree and then a meta page, each fsync'd; a crash (or
//     SIGKILL) at any point leaves the previous or the new committed state,
//     never a torn one, and a reopen needs no recovery step;
//   - pure Go (no cgo, unlike SQLite's common driver), so the CLI stays one
//     static binary;
//   - guarded by an OS file lock (flock): one writer process at a time, other
//     processes wait for it up to Options.Timeout. Two processes enrolling at
//     once therefore both succeed, one after the other, and lose nothing.
//
// A process holds the lock from Open to Close: CLI commands should open, do
// their work and close. A long-running searcher should load an Index and
// Close the gallery.
//
// # Layout (schema version 6)
//
//	meta        app, schema, model (backbone sha256), head, dim, created,
//	            counts (identities, templates; since v4)
//	identities  id (uint64 big-endian) → 0x01 ‖ CRC-32C ‖ JSON {name, metadata, created, templates}
//	names       name (NFC) → id
//	templates   identity id ‖ template id (2 × uint64 BE) → binary template ‖ CRC-32C
//	photos      photo sha256 ‖ identity id ‖ template id → empty (since v2)
//	apikeys     sha256 of a key → JSON (since v3)
//	crops       identity id ‖ template id → 0x01 ‖ JPEG ‖ CRC-32C (since v6; see crop.go)
//
// Every identity and template record carries a CRC-32C of its key and value
// (since v4), checked whenever it is read; the counts are checked by List
// and LoadIndex, and the names against the records they point at. Damage is
// reported as ErrCorrupt naming the record, never as a wrong answer (see
// file.go for the file-level checks, and Check).
//
// Templates sort by identity, so an identity's templates are one key range.
// Schema changes are migrations (see migrations), run in one transaction by
// the first read-write Open of an older file.
package enroll

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/text/unicode/norm"
)

// SchemaVersion is the layout version this package writes.
const SchemaVersion = 6

// DefaultTimeout is how long Open waits for another process's lock when
// Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// FileMode is the permission of a gallery file: owner read/write only.
const FileMode fs.FileMode = 0o600

// appID marks a bbolt file as a facever gallery.
const appID = "facever-gallery"

// Sentinel errors callers can branch on (errors.Is).
var (
	// ErrNotFound: no identity with that id or name.
	ErrNotFound = errors.New("enroll: identity not found")
	// ErrExists: an identity already has that name.
	ErrExists = errors.New("enroll: an identity with that name already exists")
	// ErrModelMismatch: the gallery holds templates of another backbone or head.
	ErrModelMismatch = errors.New("enroll: gallery was enrolled with another model")
	// ErrNoModel: templates were added through a gallery opened without Options.Model.
	ErrNoModel = errors.New("enroll: the gallery was opened without a model: cannot add templates")
	// ErrDimension: an embedding's length differs from the gallery's.
	ErrDimension = errors.New("enroll: embedding dimension mismatch")
	// ErrLocked: another process held the gallery for longer than the timeout.
	ErrLocked = errors.New("enroll: gallery is locked by another process")
	// ErrSchema: the file is not a facever gallery, is newer than this
	// program, or needs a migration that a read-only open cannot run.
	ErrSchema = errors.New("enroll: unsupported gallery schema")
	// ErrReadOnly: a write through a gallery opened read-only.
	ErrReadOnly = errors.New("enroll: gallery opened read-only")
	// ErrInvalid: an invalid name, metadata, embedding or photo hash.
	ErrInvalid = errors.New("enroll: invalid input")
	// ErrTooLarge: metadata over Options.MaxMetadataKeys or
	// Options.MaxMetadataBytes (an HTTP server answers 413).
	ErrTooLarge = errors.New("enroll: metadata too large")
)

var (
	bucketMeta       = []byte("meta")
	bucketIdentities = []byte("identities")
	bucketNames      = []byte("names")
	bucketTemplates  = []byte("templates")
	bucketPhotos     = []byte("photos")
)

// Options configure Open.
type Options struct {
	// Model is the sha256 (hex) of the backbone that makes the embeddings.
	// Non-empty: checked against the model the gallery was enrolled with
	// (recorded on first use), together with Head; a mismatch fails Open with
	// ErrModelMismatch. Empty: no check, and templates cannot be added
	// (listing, renaming and removing need no model).
	Model string
	// Head identifies the trained head on top of the backbone ("" = none).
	// Compared with the gallery's only when Model is set.
	Head string
	// ReadOnly opens with a shared lock: several readers at once, no writes.
	// The file must exist.
	ReadOnly bool
	// Timeout bounds the wait for another process's lock: 0 means
	// DefaultTimeout, a negative value waits forever.
	Timeout time.Duration
	// AcceptRollback opens a gallery whose newest committed transaction is
	// missing (a damaged meta page made bbolt fall back to the one before:
	// see file.go) instead of failing with ErrCorrupt, and, read-write,
	// resets its transaction counter: the lost transaction stays lost.
	AcceptRollback bool
	// MaxMetadataKeys bounds the number of metadata keys of one identity
	// (0: DefaultMaxMetadataKeys; negative: no limit). Enroll checks it on
	// the merged metadata; over it, the write fails with ErrTooLarge.
	MaxMetadataKeys int
	// MaxMetadataBytes bounds the total length of one identity's metadata
	// keys and values, in bytes (0: DefaultMaxMetadataBytes; negative: no
	// limit); over it, ErrTooLarge.
	MaxMetadataBytes int
	// Shard, when it has a Count above 1, keeps only that part of the
	// identities in the in-memory index (LoadIndex, Index, Search): those
	// whose ShardOf(id, Count) is Index. Writes and reads of identities and
	// templates are not affected.
	Shard Shard
}

// Default metadata limits (see Options). An identity record is read whole
// by every lookup and every enroll of that person, so its size bounds their
// cost: at the defaults a record stays under about 20 KB.
const (
	DefaultMaxMetadataKeys  = 64
	DefaultMaxMetadataBytes = 16 << 10
	// MaxMetadataKey is the longest metadata key, in bytes.
	MaxMetadataKey = 256
)

// limits are the metadata limits in force (negative: none).
type limits struct{ keys, bytes int }

func (g *Gallery) limits() limits {
	l := limits{g.opts.MaxMetadataKeys, g.opts.MaxMetadataBytes}
	if l.keys == 0 {
		l.keys = DefaultMaxMetadataKeys
	}
	if l.bytes == 0 {
		l.bytes = DefaultMaxMetadataBytes
	}
	return l
}

// checkMetadata validates metadata against l: keys non-empty, at most
// MaxMetadataKey bytes, without control characters; keys and values valid
// UTF-8 (JSON would silently replace invalid bytes).
func checkMetadata(md map[string]string, l limits) error {
	if l.keys >= 0 && len(md) > l.keys {
		return fmt.Errorf("%w: %d metadata keys, at most %d", ErrTooLarge, len(md), l.keys)
	}
	total := 0
	for k, v := range md {
		total += len(k) + len(v)
		if k == "" || len(k) > MaxMetadataKey || !utf8.ValidString(k) {
			return fmt.Errorf("%w: metadata key %q (want 1–%d bytes of UTF-8)", ErrInvalid, k, MaxMetadataKey)
		}
		for _, r := range k {
			if unicode.IsControl(r) {
				return fmt.Errorf("%w: metadata key %q has a control character", ErrInvalid, k)
			}
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: metadata value of %q is not valid UTF-8", ErrInvalid, k)
		}
	}
	if l.bytes >= 0 && total > l.bytes {
		return fmt.Errorf("%w: %d bytes of metadata keys and values, at most %d", ErrTooLarge, total, l.bytes)
	}
	return nil
}

// Meta describes a gallery.
type Meta struct {
	// Schema is the layout version of the file.
	Schema int `json:"schema"`
	// Model and Head: what the templates were made with ("" = no template yet).
	Model string `json:"model,omitempty"`
	// Head is the head the templates were made with ("" = none).
	Head string `json:"head,omitempty"`
	// Dim is the embedding length (0 = no template yet).
	Dim int `json:"dim"`
	// Created is when the gallery was created.
	Created time.Time `json:"created"`
}

// Identity is one enrolled person.
type Identity struct {
	// ID is assigned by the gallery (1, 2, ...; never reused).
	ID uint64 `json:"id"`
	// Name is unique in the gallery.
	Name string `json:"name"`
	// Metadata is free-form (employee number, notes...).
	Metadata map[string]string `json:"metadata,omitempty"`
	// Created is when the identity was enrolled.
	Created time.Time `json:"created"`
	// Templates is the number of templates the identity holds.
	Templates int `json:"templates"`
}

// Template is one enrolled photo's embedding.
type Template struct {
	// ID is set by the gallery (unique, never reused).
	ID uint64 `json:"id"`
	// IdentityID is the identity the template belongs to (set by the gallery).
	IdentityID uint64 `json:"identity_id"`
	// Embedding is the face embedding (any scale: search normalises it).
	Embedding []float32 `json:"-"`
	// Source is the photo's file name, for the record.
	Source string `json:"source"`
	// PhotoSHA256 is the hex sha256 of the photo file ("" if unknown).
	PhotoSHA256 string `json:"photo_sha256,omitempty"`
	// Created is when the template was enrolled (set by the gallery).
	Created time.Time `json:"created"`
	// Crop is the aligned face chip the template was made from, JPEG-encoded
	// (align.Chip.JPEG), at most MaxCropBytes; nil when none is kept. It is
	// written with the template and read back only by TemplateCrop: the
	// lists (Templates, TemplatesPage, FindPhoto) leave it nil and say
	// HasCrop instead, so that listing or loading the index never reads
	// the images.
	Crop []byte `json:"-"`
	// HasCrop says whether the store keeps a crop for the template (set by
	// the store when it lists templates).
	HasCrop bool `json:"has_crop"`
}

// MaxCropBytes bounds one template's stored crop (a 112×112 or 150×150
// JPEG is 3–8 KiB); a bigger one is refused with ErrTooLarge, one that is
// not a JPEG with ErrInvalid.
const MaxCropBytes = 64 << 10

// ErrNoCrop is TemplateCrop's answer for a template enrolled without a crop
// (imported, enrolled before crops were kept, or with crops turned off).
var ErrNoCrop = errors.New("enroll: no crop is kept for this template")

// Gallery is an open gallery file. Its methods are safe for concurrent use
// by the goroutines of one process; other processes wait on the file lock.
type Gallery struct {
	db   *bolt.DB
	path string
	opts Options

	side *sidecar // committed-transaction counter (nil: read-only)

	mu      sync.Mutex
	meta    Meta
	sideErr error  // the last failure to write the counter (reported by Check)
	txid    uint64 // the newest transaction this Gallery has seen committed
	index   *Index // cached by Search; used only while index.version >= txid

	loading sync.Mutex // one index load at a time (the others wait and share it)
}

// Open opens the gallery at path, creating it (mode 0600) unless
// opts.ReadOnly, migrating an older schema, and checking the model (see
// Options). It waits for another process's lock up to opts.Timeout and then
// fails with ErrLocked.
//
// A file that is not a gallery (empty, foreign) fails with ErrSchema, a
// damaged one (truncated, meta pages destroyed, its page structure broken,
// its newest transaction rolled back) with ErrCorrupt. Open reads every
// page of the file once to check its structure (see checkStructure).
func Open(path string, opts Options) (*Gallery, error) {
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open gallery: %w", err)
		}
	}
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = 0 // bbolt: wait forever
	}
	var db *bolt.DB
	var opened *os.File
	err := guard(func() error {
		var err error
		db, err = bolt.Open(path, FileMode, &bolt.Options{Timeout: timeout, ReadOnly: opts.ReadOnly, FreelistType: bolt.FreelistMapType,
			OpenFile: opener(opts.ReadOnly, timeout, &opened)})
		return err
	})
	if db == nil && opened != nil {
		// bbolt panicked before it could close the file: release the lock
		// (its mmap, left behind, would keep it) and the descriptor.
		funlock(opened.Fd())
		opened.Close()
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrSchema), errors.Is(err, ErrCorrupt):
			return nil, fmt.Errorf("open gallery %s: %w", path, err)
		case errors.Is(err, bolt.ErrTimeout), errors.Is(err, errLockTimeout):
			return nil, fmt.Errorf("open gallery %s: %w (waited %v)", path, ErrLocked, timeout)
		case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch):
			return nil, fmt.Errorf("open gallery %s: %w: not a facever gallery (%v)", path, ErrSchema, err)
		case errors.Is(err, bolt.ErrChecksum):
			return nil, fmt.Errorf("open gallery %s: %w: %v", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open gallery %s: %w", path, err)
	}
	g := &Gallery{db: db, path: path, opts: opts}
	if err := g.checkStructure(); err != nil {
		g.Close()
		return nil, fmt.Errorf("open gallery %s: %w", path, err)
	}
	if err := g.checkRollback(); err != nil {
		g.Close()
		return nil, fmt.Errorf("open gallery %s: %w", path, err)
	}
	if err := g.init(); err != nil {
		g.Close()
		return nil, fmt.Errorf("open gallery %s: %w", path, err)
	}
	if !opts.ReadOnly {
		// Templates are biometric data: tighten a file created elsewhere.
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&^FileMode != 0 {
			if err := os.Chmod(path, FileMode); err != nil {
				g.Close()
				return nil, fmt.Errorf("open gallery %s: %w", path, err)
			}
		}
	}
	return g, nil
}

// checkStructure walks the file's page structure (see pageWalker) before
// bbolt reads it: on pages that point back at their ancestors, at each
// other or out of the file, bbolt's cursors loop forever or panic in ways
// no recover can reach. It reads every page once: 0.1–0.3 s for 10,000
// templates of 512 values (20 MB) on a busy 2-core machine, about what
// LoadIndex costs.
func (g *Gallery) checkStructure() error {
	var txid uint64
	if err := g.view(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil }); err != nil {
		return err
	}
	var first string
	if !checkPages(g.path, txid, func(format string, args ...any) {
		if first == "" {
			first = fmt.Sprintf(format, args...)
		}
	}) {
		if first == "" {
			first = fmt.Sprintf("the meta page of transaction %d changed while it was read", txid)
		}
		return fmt.Errorf("%w: %s", ErrCorrupt, first)
	}
	return nil
}

// checkRollback compares the file's newest transaction with the counter
// kept beside it (see file.go), and, read-write, opens the counter and
// brings it up to date.
func (g *Gallery) checkRollback() error {
	var txid uint64
	if err := g.view(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil }); err != nil {
		return err
	}
	sp := g.path + SidecarSuffix
	rec, ok, err := readSidecar(sp)
	if err != nil && !g.opts.AcceptRollback {
		return err
	}
	if ok && rec > txid && !g.opts.AcceptRollback {
		return fmt.Errorf("%w: transaction %d was committed (recorded in %s) but the file's newest is %d: its newest meta page is damaged and the last %d transaction(s) are lost (a meta-page rollback); restore a backup with `facever gallery restore`, or open it accepting the loss (enroll.Options.AcceptRollback)",
			ErrCorrupt, rec, sp, txid, rec-txid)
	}
	if g.opts.ReadOnly {
		return nil
	}
	if g.side, err = openSidecar(sp); err != nil {
		return err
	}
	return g.side.force(txid)
}

// init migrates, reads the meta data and checks or records the model.
func (g *Gallery) init() error {
	var version int
	var foreign bool
	var hasModel bool
	err := g.view(func(tx *bolt.Tx) error {
		version, foreign = schemaOf(tx)
		if b := tx.Bucket(bucketMeta); b != nil {
			hasModel = len(b.Get([]byte("model"))) > 0
		}
		return nil
	})
	if err != nil {
		return err
	}
	if foreign {
		return fmt.Errorf("%w: not a facever gallery", ErrSchema)
	}
	latest := latestSchema()
	if version > latest {
		return fmt.Errorf("%w: schema %d is newer than this program's %d", ErrSchema, version, latest)
	}
	// Write only when there is something to write: a migration, or the model
	// of a gallery that has none yet.
	recordModel := !g.opts.ReadOnly && g.opts.Model != "" && !hasModel
	if version < latest || recordModel {
		if g.opts.ReadOnly {
			return fmt.Errorf("%w: schema %d needs migrating to %d: open it read-write once", ErrSchema, version, latest)
		}
		err := g.update(func(tx *bolt.Tx) error {
			if err := migrate(tx); err != nil {
				return err
			}
			m := readMeta(tx)
			if g.opts.Model != "" && m.Model == "" {
				b := tx.Bucket(bucketMeta)
				if err := b.Put([]byte("model"), []byte(g.opts.Model)); err != nil {
					return err
				}
				return b.Put([]byte("head"), []byte(g.opts.Head))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return g.view(func(tx *bolt.Tx) error {
		g.meta = readMeta(tx)
		g.txid = uint64(tx.ID())
		return g.checkModel()
	})
}

func (g *Gallery) checkModel() error {
	m := g.meta
	if g.opts.Model == "" || m.Model == "" {
		return nil
	}
	if m.Model != g.opts.Model || m.Head != g.opts.Head {
		return fmt.Errorf("%w: its templates come from backbone %s head %s, this run uses backbone %s head %s; templates of different models cannot be compared: enroll into a new gallery",
			ErrModelMismatch, short(m.Model), headName(m.Head), short(g.opts.Model), headName(g.opts.Head))
	}
	return nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func headName(h string) string {
	if h == "" {
		return "(none)"
	}
	return strconv.Quote(h)
}

// migration upgrades the layout to version to, inside one transaction.
type migration struct {
	to   int
	name string
	up   func(tx *bolt.Tx) error
}

// migrations, in order. A new layout appends an entry (never edit a
// published one) and raises SchemaVersion.
var migrations = []migration{
	{1, "initial layout", func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketIdentities, bucketNames, bucketTemplates} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put([]byte("app"), []byte(appID)); err != nil {
			return err
		}
		return meta.Put([]byte("created"), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	}},
	{2, "photo index: which templates come from a photo (by sha256)", func(tx *bolt.Tx) error {
		photos, err := tx.CreateBucketIfNotExists(bucketPhotos)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketTemplates).ForEach(func(k, v []byte) error {
			if sha := photoSHA(v); sha != nil {
				return photos.Put(append(append([]byte(nil), sha...), k...), nil)
			}
			return nil
		})
	}},
	{3, "API keys of facever serve (sha256 of each key)", func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketAPIKeys)
		return err
	}},
	{4, "record checksums (CRC-32C of key and value) and record counts", func(tx *bolt.Tx) error {
		ni, err := rewriteAll(tx.Bucket(bucketIdentities), func(k, v []byte) ([]byte, error) {
			if len(v) > 0 && v[0] == '{' { // v3: bare JSON
				return sealIdentity(k, v), nil
			}
			_, err := openIdentity(k, v)
			return nil, err
		})
		if err != nil {
			return err
		}
		nt, err := rewriteAll(tx.Bucket(bucketTemplates), func(k, v []byte) ([]byte, error) {
			if len(v) > 0 && v[0] == 1 { // v3: no checksum
				return sealTemplate(k, append([]byte{2}, v[1:]...)), nil
			}
			_, err := openTemplate(k, v)
			return nil, err
		})
		if err != nil {
			return err
		}
		return putCounts(tx, counts{identities: ni, templates: nt})
	}},
	{5, "API key scopes (keys made before are admin keys)", migrateKeyScopes},
	{6, "enrolled crops: each template's aligned face chip (JPEG), apart from the templates", func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketCrops)
		return err
	}},
}

// rewriteAll replaces every value of b by fn's result (nil: keep it), in
// batches (a bbolt cursor must be repositioned after a write), and returns
// the number of keys.
func rewriteAll(b *bolt.Bucket, fn func(k, v []byte) ([]byte, error)) (uint64, error) {
	var n uint64
	var after []byte
	for {
		type kv struct{ k, v []byte }
		var batch []kv
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(batch) < 1000; k, v = c.Next() {
			n++
			nv, err := fn(k, v)
			if err != nil {
				return 0, err
			}
			if nv != nil {
				batch = append(batch, kv{append([]byte(nil), k...), nv})
			}
			after = append(after[:0], k...)
		}
		for _, e := range batch {
			if err := b.Put(e.k, e.v); err != nil {
				return 0, err
			}
		}
		if k == nil {
			return n, nil
		}
	}
}

func latestSchema() int { return migrations[len(migrations)-1].to }

// schemaOf returns the schema version (0: empty file) and whether the file
// holds something that is not a facever gallery.
func schemaOf(tx *bolt.Tx) (version int, foreign bool) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		return 0, !empty
	}
	if string(meta.Get([]byte("app"))) != appID {
		return 0, true
	}
	v := meta.Get([]byte("schema"))
	if len(v) != 4 {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(v)), false
}

// migrate runs every pending migration and records the new version.
func migrate(tx *bolt.Tx) error {
	version, _ := schemaOf(tx)
	for _, m := range migrations {
		if m.to <= version {
			continue
		}
		if err := m.up(tx); err != nil {
			return fmt.Errorf("migrate gallery to schema %d (%s): %w", m.to, m.name, err)
		}
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(m.to))
		if err := tx.Bucket(bucketMeta).Put([]byte("schema"), v[:]); err != nil {
			return err
		}
		version = m.to
	}
	return nil
}

func readMeta(tx *bolt.Tx) Meta {
	b := tx.Bucket(bucketMeta)
	m := Meta{}
	m.Schema, _ = schemaOf(tx)
	m.Model = string(b.Get([]byte("model")))
	m.Head = string(b.Get([]byte("head")))
	if v := b.Get([]byte("dim")); len(v) == 4 {
		m.Dim = int(binary.BigEndian.Uint32(v))
	}
	m.Created, _ = time.Parse(time.RFC3339Nano, string(b.Get([]byte("created"))))
	return m
}

// Close releases the file and its lock.
func (g *Gallery) Close() error {
	err := g.db.Close()
	if serr := g.side.close(); err == nil {
		err = serr
	}
	return err
}

// Path is the gallery's file name.
func (g *Gallery) Path() string { return g.path }

// Meta returns the gallery's description.
func (g *Gallery) Meta() Meta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// update runs a write transaction and, once it has committed, records its
// id (so that no index older than it is used from then on: read-your-writes)
// and the new meta data, before returning to the caller.
func (g *Gallery) update(fn func(tx *bolt.Tx) error) error {
	if g.opts.ReadOnly {
		return ErrReadOnly
	}
	var txid uint64
	var meta Meta
	err := guard(func() error {
		return g.db.Update(func(tx *bolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			txid = uint64(tx.ID())
			if tx.Bucket(bucketMeta) != nil {
				meta = readMeta(tx)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// The write has committed: it stands even if the counter cannot be
	// written (Check reports that).
	serr := g.side.record(txid)
	g.mu.Lock()
	if serr != nil {
		g.sideErr = serr
	}
	if txid > g.txid {
		g.txid = txid
		g.meta = meta
	}
	if g.index != nil && g.index.version < g.txid {
		g.index = nil // stale: free it now
	}
	g.mu.Unlock()
	return nil
}

// view runs a read transaction (see guard).
func (g *Gallery) view(fn func(tx *bolt.Tx) error) error {
	return guard(func() error { return g.db.View(fn) })
}

// ErrCorrupt: the gallery file is damaged (a record's checksum, a page of
// the file, its meta pages or its committed-transaction counter). The error
// says what is damaged; `facever gallery check` reports everything, and a
// backup can be restored with `facever gallery restore`.
var ErrCorrupt = errors.New("enroll: gallery file is damaged")

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// MaxName is the longest identity name, in bytes (after normalisation).
const MaxName = 256

// NormalizeName returns name as the gallery stores and looks it up: in
// Unicode normal form C, so that "José" typed with a precomposed é and with
// e + U+0301 is one person. It refuses (ErrInvalid, with a message that says
// why) names that are empty, longer than MaxName bytes, not UTF-8, with
// leading or trailing spaces, or with a character that is invisible or
// changes how the text around it is shown: control characters (C0, C1),
// format characters (zero-width space U+200B, bidi controls U+202A–U+202E
// and U+2066–U+2069, soft hyphen, BOM...), line and paragraph separators,
// private-use, surrogate and unassigned code points, and the other
// default-ignorable ones (e.g. U+3164 Hangul filler). Zero-width joiner and
// non-joiner (U+200D, U+200C) are kept between two letters, where Persian
// and Indic names need them.
func NormalizeName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: name %q is not valid UTF-8", ErrInvalid, name)
	}
	n := norm.NFC.String(name)
	if n == "" || len(n) > MaxName || strings.TrimSpace(n) != n {
		return "", fmt.Errorf("%w: name %q (want 1–%d bytes of UTF-8, no surrounding spaces)", ErrInvalid, name, MaxName)
	}
	rs := []rune(n)
	for i, r := range rs {
		if !nameRune(r) {
			if (r == 0x200c || r == 0x200d) && i > 0 && i < len(rs)-1 && unicode.IsLetter(rs[i-1]) && unicode.IsLetter(rs[i+1]) {
				continue
			}
			what := "an invisible or formatting character"
			if unicode.IsControl(r) {
				what = "a control character"
			}
			return "", fmt.Errorf("%w: name %q has %s (U+%04X at byte %d): type the name without it", ErrInvalid, name, what, r, len(string(rs[:i])))
		}
	}
	return n, nil
}

// nameRune reports whether r may appear in a name: letters, marks, numbers,
// punctuation, symbols and spaces (Zs), minus the default-ignorable ones.
func nameRune(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs) &&
		!unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) &&
		!unicode.Is(unicode.Variation_Selector, r) && r != 0x034f // combining grapheme joiner
}

// byName finds the identity called name: by its normal form first, then by
// the bytes as given (a name stored before normalisation). The names index
// is checked against the record it points at.
func byName(tx *bolt.Tx, name string) (Identity, bool, error) {
	names := tx.Bucket(bucketNames)
	key := []byte(name)
	if n, err := NormalizeName(name); err == nil && names.Get([]byte(n)) != nil {
		key = []byte(n)
	}
	if len(key) == 0 {
		return Identity{}, false, nil
	}
	v := names.Get(key)
	if v == nil {
		return Identity{}, false, nil
	}
	if len(v) != 8 {
		return Identity{}, false, fmt.Errorf("%w: the names index entry of %q is damaged", ErrCorrupt, key)
	}
	it, err := getIdentity(tx, binary.BigEndian.Uint64(v))
	if errors.Is(err, ErrNotFound) || err == nil && it.Name != string(key) {
		return Identity{}, false, fmt.Errorf("%w: the names index points %q at identity %d, which is not called that", ErrCorrupt, key, binary.BigEndian.Uint64(v))
	}
	return it, err == nil, err
}

type identityRecord struct {
	Name      string            `json:"name"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Created   time.Time         `json:"created"`
	Templates int               `json:"templates"`
}

func getIdentity(tx *bolt.Tx, id uint64) (Identity, error) {
	v := tx.Bucket(bucketIdentities).Get(u64(id))
	if v == nil {
		return Identity{}, fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	return decodeIdentity(id, v)
}

// Identity value: 0x01, CRC-32C (big endian) of key ‖ JSON, JSON.
func sealIdentity(key, js []byte) []byte {
	v := make([]byte, 5, 5+len(js))
	v[0] = 1
	binary.BigEndian.PutUint32(v[1:], recordSum(key, js))
	return append(v, js...)
}

// openIdentity checks an identity value's checksum and returns its JSON.
func openIdentity(key, v []byte) ([]byte, error) {
	if len(key) != 8 {
		return nil, fmt.Errorf("%w: identity key %x is not 8 bytes", ErrCorrupt, key)
	}
	id := binary.BigEndian.Uint64(key)
	if len(v) < 5 || v[0] != 1 {
		return nil, fmt.Errorf("%w: identity %d: unknown record format", ErrCorrupt, id)
	}
	if recordSum(key, v[5:]) != binary.BigEndian.Uint32(v[1:]) {
		return nil, fmt.Errorf("%w: identity %d: record checksum mismatch", ErrCorrupt, id)
	}
	return v[5:], nil
}

func decodeIdentity(id uint64, v []byte) (Identity, error) {
	js, err := openIdentity(u64(id), v)
	if err != nil {
		return Identity{}, err
	}
	var r identityRecord
	if err := json.Unmarshal(js, &r); err != nil {
		return Identity{}, fmt.Errorf("%w: identity %d: %v", ErrCorrupt, id, err)
	}
	return Identity{ID: id, Name: r.Name, Metadata: r.Metadata, Created: r.Created, Templates: r.Templates}, nil
}

func putIdentity(tx *bolt.Tx, it Identity) error {
	v, err := json.Marshal(identityRecord{Name: it.Name, Metadata: it.Metadata, Created: it.Created, Templates: it.Templates})
	if err != nil {
		return err
	}
	key := u64(it.ID)
	return tx.Bucket(bucketIdentities).Put(key, sealIdentity(key, v))
}

// counts are the numbers of identities and templates, kept in meta (since
// v4) so that a part of the file that has vanished is noticed.
type counts struct{ identities, templates uint64 }

var keyCounts = []byte("counts")

// getCounts returns the counts; ok is false in a file older than v4.
func getCounts(tx *bolt.Tx) (c counts, ok bool, err error) {
	v := tx.Bucket(bucketMeta).Get(keyCounts)
	if v == nil {
		if version, _ := schemaOf(tx); version < 4 {
			return counts{}, false, nil
		}
		return counts{}, false, fmt.Errorf("%w: the record counts are missing", ErrCorrupt)
	}
	if len(v) != 20 || recordSum(keyCounts, v[:16]) != binary.BigEndian.Uint32(v[16:]) {
		return counts{}, false, fmt.Errorf("%w: the record counts are damaged", ErrCorrupt)
	}
	return counts{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}, true, nil
}

func putCounts(tx *bolt.Tx, c counts) error {
	v := make([]byte, 20)
	binary.BigEndian.PutUint64(v, c.identities)
	binary.BigEndian.PutUint64(v[8:], c.templates)
	binary.BigEndian.PutUint32(v[16:], recordSum(keyCounts, v[:16]))
	return tx.Bucket(bucketMeta).Put(keyCounts, v)
}

// addCounts adjusts the counts (a no-op in a file older than v4, whose
// migration counts everything).
func addCounts(tx *bolt.Tx, identities, templates int) error {
	c, ok, err := getCounts(tx)
	if err != nil || !ok {
		return err
	}
	c.identities += uint64(identities)
	c.templates += uint64(templates)
	return putCounts(tx, c)
}

func createIdentity(tx *bolt.Tx, name string, metadata map[string]string, l limits) (Identity, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return Identity{}, err
	}
	if err := checkMetadata(metadata, l); err != nil {
		return Identity{}, err
	}
	names := tx.Bucket(bucketNames)
	if names.Get([]byte(name)) != nil {
		return Identity{}, fmt.Errorf("%w: %q", ErrExists, name)
	}
	id, err := tx.Bucket(bucketIdentities).NextSequence()
	if err != nil {
		return Identity{}, err
	}
	it := Identity{ID: id, Name: name, Metadata: metadata, Created: time.Now().UTC()}
	if err := putIdentity(tx, it); err != nil {
		return Identity{}, err
	}
	if err := addCounts(tx, 1, 0); err != nil {
		return Identity{}, err
	}
	return it, names.Put([]byte(name), u64(id))
}

// AddIdentity creates an identity with no template. Names are unique
// (ErrExists) after normalisation (see NormalizeName); metadata is bounded
// (ErrTooLarge, see Options).
func (g *Gallery) AddIdentity(name string, metadata map[string]string) (Identity, error) {
	var it Identity
	err := g.update(func(tx *bolt.Tx) error {
		var err error
		it, err = createIdentity(tx, name, metadata, g.limits())
		return err
	})
	return it, err
}

// AddTemplates adds templates to identity id in one transaction, and returns
// them with their ids. The gallery must be opened with Options.Model; the
// first template fixes the gallery's embedding dimension.
func (g *Gallery) AddTemplates(id uint64, ts []Template) ([]Template, error) {
	var out []Template
	err := g.update(func(tx *bolt.Tx) error {
		it, err := getIdentity(tx, id)
		if err != nil {
			return err
		}
		out, err = g.addTemplates(tx, &it, ts)
		return err
	})
	return out, err
}

// Enroll adds templates to the identity called name, creating it (with
// metadata) when there is none, all in one transaction: concurrent enrolls
// of one name from several processes end in one identity. Metadata of an
// existing identity is merged (new keys win), and the merged metadata must
// fit the limits (ErrTooLarge, see Options). The name is normalised (see
// NormalizeName).
func (g *Gallery) Enroll(name string, metadata map[string]string, ts []Template) (Identity, []Template, error) {
	var it Identity
	var out []Template
	err := g.update(func(tx *bolt.Tx) error {
		var err error
		var found bool
		if it, found, err = byName(tx, name); err != nil {
			return err
		}
		if found {
			if len(metadata) > 0 && it.Metadata == nil {
				it.Metadata = map[string]string{}
			}
			for k, v := range metadata {
				it.Metadata[k] = v
			}
			if err := checkMetadata(it.Metadata, g.limits()); err != nil {
				return fmt.Errorf("identity %q: %w", it.Name, err)
			}
		} else if it, err = createIdentity(tx, name, metadata, g.limits()); err != nil {
			return err
		}
		out, err = g.addTemplates(tx, &it, ts)
		return err
	})
	if err != nil {
		return Identity{}, nil, err
	}
	return it, out, nil
}

func (g *Gallery) addTemplates(tx *bolt.Tx, it *Identity, ts []Template) ([]Template, error) {
	if g.opts.Model == "" {
		return nil, ErrNoModel
	}
	meta := tx.Bucket(bucketMeta)
	dim := 0
	if v := meta.Get([]byte("dim")); len(v) == 4 {
		dim = int(binary.BigEndian.Uint32(v))
	}
	tb := tx.Bucket(bucketTemplates)
	out := make([]Template, 0, len(ts))
	now := time.Now().UTC()
	for i, t := range ts {
		if len(t.Embedding) == 0 {
			return nil, fmt.Errorf("%w: template %d has an empty embedding", ErrInvalid, i)
		}
		if dim == 0 {
			dim = len(t.Embedding)
			var v [4]byte
			binary.BigEndian.PutUint32(v[:], uint32(dim))
			if err := meta.Put([]byte("dim"), v[:]); err != nil {
				return nil, err
			}
		}
		if len(t.Embedding) != dim {
			return nil, fmt.Errorf("%w: template %d has %d values, the gallery %d", ErrDimension, i, len(t.Embedding), dim)
		}
		var sq float64
		for _, x := range t.Embedding {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: template %d has a non-finite value", ErrInvalid, i)
			}
			sq += float64(x) * float64(x)
		}
		if sq == 0 {
			return nil, fmt.Errorf("%w: template %d is a zero vector", ErrInvalid, i)
		}
		if err := CheckCrop(t.Crop); err != nil {
			return nil, fmt.Errorf("template %d: %w", i, err)
		}
		tid, err := tb.NextSequence()
		if err != nil {
			return nil, err
		}
		t.ID, t.IdentityID, t.Created = tid, it.ID, now
		v, err := encodeTemplate(t)
		if err != nil {
			return nil, fmt.Errorf("template %d: %w", i, err)
		}
		key := append(u64(it.ID), u64(tid)...)
		if err := tb.Put(key, v); err != nil {
			return nil, err
		}
		// (photos is nil only in a schema-1 file, i.e. in the migration test.)
		if sha, photos := photoSHA(v), tx.Bucket(bucketPhotos); sha != nil && photos != nil {
			if err := photos.Put(append(append([]byte(nil), sha...), key...), nil); err != nil {
				return nil, err
			}
		}
		if err := putCrop(tx, key, t.Crop); err != nil {
			return nil, err
		}
		t.Embedding = append([]float32(nil), t.Embedding...)
		t.HasCrop, t.Crop = len(t.Crop) > 0, nil
		out = append(out, t)
	}
	it.Templates += len(ts)
	if err := addCounts(tx, 0, len(ts)); err != nil {
		return nil, err
	}
	return out, putIdentity(tx, *it)
}

// Template value: version byte 2, uint32 dim, dim float32 (little endian),
// 32-byte photo sha256 (zeros: unknown), int64 created (Unix ns), uint16
// source length, source bytes, and the CRC-32C (little endian) of the key
// and all that. (Version 1, before schema 4, had no checksum.)
func encodeTemplate(t Template) ([]byte, error) {
	var sha [32]byte
	if t.PhotoSHA256 != "" {
		b, err := hex.DecodeString(t.PhotoSHA256)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: photo sha256 %q is not 64 hex digits", ErrInvalid, t.PhotoSHA256)
		}
		copy(sha[:], b)
	}
	src := t.Source
	if len(src) > math.MaxUint16 {
		src = src[:math.MaxUint16]
	}
	buf := make([]byte, 0, 1+4+4*len(t.Embedding)+32+8+2+len(src)+4)
	buf = append(buf, 2)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(t.Embedding)))
	for _, x := range t.Embedding {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
	}
	buf = append(buf, sha[:]...)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(t.Created.UnixNano()))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(src)))
	buf = append(buf, src...)
	return sealTemplate(append(u64(t.IdentityID), u64(t.ID)...), buf), nil
}

// sealTemplate appends the checksum to a template value.
func sealTemplate(key, v []byte) []byte {
	return binary.LittleEndian.AppendUint32(v, recordSum(key, v))
}

// openTemplate checks a template value's checksum and returns it without.
func openTemplate(key, v []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("%w: template key %x is not 16 bytes", ErrCorrupt, key)
	}
	if len(v) < 5+4 || v[0] != 2 {
		return nil, fmt.Errorf("%w: %s: unknown record format", ErrCorrupt, templateName(key))
	}
	n := len(v) - 4
	if recordSum(key, v[:n]) != binary.LittleEndian.Uint32(v[n:]) {
		return nil, fmt.Errorf("%w: %s: record checksum mismatch", ErrCorrupt, templateName(key))
	}
	return v[:n], nil
}

func templateName(key []byte) string {
	return fmt.Sprintf("template %d of identity %d", binary.BigEndian.Uint64(key[8:]), binary.BigEndian.Uint64(key))
}

// decodeEmbedding checks a template record and decodes only its embedding
// into emb, which must have the record's length.
func decodeEmbedding(key, v []byte, emb []float32) error {
	v, err := openTemplate(key, v)
	if err != nil {
		return err
	}
	if int(binary.LittleEndian.Uint32(v[1:])) != len(emb) || len(v) < 5+4*len(emb) {
		return fmt.Errorf("%w: %s has %d values, the gallery %d", ErrCorrupt, templateName(key), binary.LittleEndian.Uint32(v[1:]), len(emb))
	}
	b := v[5 : 5+4*len(emb)]
	for i := range emb {
		emb[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return nil
}

// photoSHA returns the photo sha256 of an encoded template, nil when unknown
// or when the record is too short.
func photoSHA(v []byte) []byte {
	if len(v) < 5 {
		return nil
	}
	off := 5 + 4*int(binary.LittleEndian.Uint32(v[1:]))
	if off < 5 || len(v) < off+32 {
		return nil
	}
	sha := v[off : off+32]
	if bytes.Equal(sha, make([]byte, 32)) {
		return nil
	}
	return sha
}

// decodeTemplate checks and decodes a value; emb, when non-nil and long
// enough, receives the embedding (no allocation).
func decodeTemplate(key, v []byte, emb []float32) (Template, error) {
	v, err := openTemplate(key, v)
	if err != nil {
		return Template{}, err
	}
	errCorrupt := fmt.Errorf("%w: %s: malformed record", ErrCorrupt, templateName(key))
	dim := int(binary.LittleEndian.Uint32(v[1:]))
	rest := v[5:]
	if dim < 0 || len(rest) < 4*dim+32+8+2 {
		return Template{}, errCorrupt
	}
	t := Template{IdentityID: binary.BigEndian.Uint64(key), ID: binary.BigEndian.Uint64(key[8:])}
	if len(emb) < dim {
		emb = make([]float32, dim)
	}
	t.Embedding = emb[:dim]
	for i := range dim {
		t.Embedding[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
	}
	rest = rest[4*dim:]
	if sha := rest[:32]; !bytes.Equal(sha, make([]byte, 32)) {
		t.PhotoSHA256 = hex.EncodeToString(sha)
	}
	t.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(rest[32:]))).UTC()
	n := int(binary.LittleEndian.Uint16(rest[40:]))
	if len(rest) < 42+n {
		return Template{}, errCorrupt
	}
	t.Source = string(rest[42 : 42+n])
	return t, nil
}

// List returns every identity, by id.
func (g *Gallery) List() ([]Identity, error) {
	var out []Identity
	err := g.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketIdentities).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: identity key %x", ErrCorrupt, k)
			}
			it, err := decodeIdentity(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, it)
			return nil
		})
		if err != nil {
			return err
		}
		if c, ok, err := getCounts(tx); err != nil {
			return err
		} else if ok && c.identities != uint64(len(out)) {
			return fmt.Errorf("%w: %d identities found, %d recorded", ErrCorrupt, len(out), c.identities)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MaxPage is the most identities one ListPage call returns.
const MaxPage = 1000

// ListPage returns up to limit identities (1..MaxPage; 0 or more than
// MaxPage means MaxPage) whose ids come after after, by id, and the cursor
// of the next page: pass next as after to continue, until next is 0. Each
// page is one short read transaction, so a server can stream a list of any
// length in bounded memory; a page reflects the gallery when it was read
// (identities enrolled meanwhile with higher ids appear in later pages).
func (g *Gallery) ListPage(after uint64, limit int) (page []Identity, next uint64, err error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	err = g.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketIdentities).Cursor()
		k, v := c.Seek(u64(after + 1))
		if after == math.MaxUint64 {
			k = nil
		}
		for ; k != nil; k, v = c.Next() {
			if len(page) == limit {
				next = page[len(page)-1].ID
				return nil
			}
			if len(k) != 8 {
				return fmt.Errorf("%w: identity key %x", ErrCorrupt, k)
			}
			it, err := decodeIdentity(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			page = append(page, it)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return page, next, nil
}

// Get returns identity id (ErrNotFound).
func (g *Gallery) Get(id uint64) (Identity, error) {
	var it Identity
	err := g.view(func(tx *bolt.Tx) error {
		var err error
		it, err = getIdentity(tx, id)
		return err
	})
	return it, err
}

// GetByName returns the identity called name (ErrNotFound).
func (g *Gallery) GetByName(name string) (Identity, error) {
	var it Identity
	err := g.view(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		if it, ok, err = byName(tx, name); err == nil && !ok {
			err = fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return err
	})
	return it, err
}

// Resolve finds an identity by name, or else by its decimal id (optionally
// written "#12"): what a CLI argument naming a person means.
func (g *Gallery) Resolve(ref string) (Identity, error) {
	it, err := g.GetByName(ref)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return it, err
	}
	if id, perr := strconv.ParseUint(strings.TrimPrefix(ref, "#"), 10, 64); perr == nil {
		return g.Get(id)
	}
	return Identity{}, err
}

// Templates returns the templates of identity id, in enrolment order.
func (g *Gallery) Templates(id uint64) ([]Template, error) {
	var out []Template
	err := g.view(func(tx *bolt.Tx) error {
		it, err := getIdentity(tx, id)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketTemplates).Cursor()
		prefix := u64(id)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			t, err := decodeTemplate(k, v, nil)
			if err != nil {
				return err
			}
			t.HasCrop = hasCrop(tx, k)
			out = append(out, t)
		}
		if len(out) != it.Templates {
			return fmt.Errorf("%w: identity %d has %d templates, its record says %d", ErrCorrupt, id, len(out), it.Templates)
		}
		return nil
	})
	return out, err
}

// FindPhoto returns the templates enrolled from the photo whose sha256 (hex)
// is given, in any identity: a way to notice a photo enrolled twice.
func (g *Gallery) FindPhoto(sha256hex string) ([]Template, error) {
	sha, err := hex.DecodeString(sha256hex)
	if err != nil || len(sha) != 32 {
		return nil, fmt.Errorf("%w: photo sha256 %q is not 64 hex digits", ErrInvalid, sha256hex)
	}
	var out []Template
	err = g.view(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPhotos)
		if pb == nil {
			return nil
		}
		c := pb.Cursor()
		tb := tx.Bucket(bucketTemplates)
		for k, _ := c.Seek(sha); k != nil && bytes.HasPrefix(k, sha); k, _ = c.Next() {
			key := k[32:]
			v := tb.Get(key)
			if v == nil {
				return fmt.Errorf("%w: the photo index names a missing %s", ErrCorrupt, templateName(key))
			}
			t, err := decodeTemplate(key, v, nil)
			if err != nil {
				return err
			}
			if t.PhotoSHA256 != sha256hex {
				return fmt.Errorf("%w: the photo index names %s, which comes from another photo", ErrCorrupt, templateName(key))
			}
			t.HasCrop = hasCrop(tx, key)
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// Remove deletes identity id and all its templates.
func (g *Gallery) Remove(id uint64) error {
	return g.update(func(tx *bolt.Tx) error {
		it, err := getIdentity(tx, id)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketTemplates).Cursor()
		photos := tx.Bucket(bucketPhotos)
		prefix := u64(id)
		removed := 0
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
			removed++
			if sha := photoSHA(v); sha != nil && photos != nil {
				if err := photos.Delete(append(append([]byte(nil), sha...), k...)); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if err := deleteCrops(tx, id); err != nil {
			return err
		}
		if err := tx.Bucket(bucketNames).Delete([]byte(it.Name)); err != nil {
			return err
		}
		if err := addCounts(tx, -1, -removed); err != nil {
			return err
		}
		return tx.Bucket(bucketIdentities).Delete(u64(id))
	})
}

// Rename gives identity id a new, unused name (normalised: see
// NormalizeName).
func (g *Gallery) Rename(id uint64, name string) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	return g.update(func(tx *bolt.Tx) error {
		it, err := getIdentity(tx, id)
		if err != nil {
			return err
		}
		if it.Name == name {
			return nil
		}
		names := tx.Bucket(bucketNames)
		if names.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: %q", ErrExists, name)
		}
		if err := names.Delete([]byte(it.Name)); err != nil {
			return err
		}
		it.Name = name
		if err := putIdentity(tx, it); err != nil {
			return err
		}
		return names.Put([]byte(name), u64(id))
	})
}

// LoadIndex reads every template into an in-memory Index for search
// (normalised float32 rows, one contiguous matrix), only the identities of
// Options.Shard when the gallery was opened with one.
//
// The index is tied to the transaction it was read in (Index.Version).
func (g *Gallery) LoadIndex() (*Index, error) {
	var ix *Index
	err := g.view(func(tx *bolt.Tx) error {
		meta := readMeta(tx)
		c, haveCounts, err := getCounts(tx)
		if err != nil {
			return err
		}
		n := int(c.templates)
		if !haveCounts {
			n = tx.Bucket(bucketTemplates).Stats().KeyN
		}
		// A damaged count or dimension must not make a huge allocation:
		// the file cannot hold more than this.
		if room := int(tx.Size() / int64(4*meta.Dim+1)); n > room || n < 0 {
			return fmt.Errorf("%w: %d templates of %d values claimed, the file has room for %d", ErrCorrupt, c.templates, meta.Dim, room)
		}
		sh := g.opts.Shard
		if sh.Sharded() {
			n = n/sh.Count + n/(8*sh.Count) + 16 // room for an uneven share
		}
		ix = NewIndex(meta.Dim, n)
		ix.version = uint64(tx.ID())
		type person struct {
			name       string
			want, seen int
		}
		people := map[uint64]*person{}
		if err := tx.Bucket(bucketIdentities).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: identity key %x", ErrCorrupt, k)
			}
			it, err := decodeIdentity(binary.BigEndian.Uint64(k), v)
			people[it.ID] = &person{name: it.Name, want: it.Templates}
			return err
		}); err != nil {
			return err
		}
		emb := make([]float32, meta.Dim)
		templates := uint64(0)
		err = tx.Bucket(bucketTemplates).ForEach(func(k, v []byte) error {
			if err := decodeEmbedding(k, v, emb); err != nil {
				return err
			}
			id := binary.BigEndian.Uint64(k)
			p := people[id]
			if p == nil {
				return fmt.Errorf("%w: %s: no such identity", ErrCorrupt, templateName(k))
			}
			p.seen++
			templates++
			if !sh.Owns(id) {
				return nil
			}
			return ix.Add(id, p.name, binary.BigEndian.Uint64(k[8:]), emb)
		})
		if err != nil {
			return err
		}
		// Every record checks out; now check that none is missing.
		for id, p := range people {
			if p.seen != p.want {
				return fmt.Errorf("%w: identity %d has %d templates, its record says %d", ErrCorrupt, id, p.seen, p.want)
			}
		}
		if haveCounts && (uint64(len(people)) != c.identities || templates != c.templates) {
			return fmt.Errorf("%w: %d identities and %d templates found, %d and %d recorded", ErrCorrupt, len(people), templates, c.identities, c.templates)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load index of %s: %w", g.path, err)
	}
	return ix, nil
}

// Version is the id of the newest transaction this Gallery has committed or
// seen at Open: every write through it raises it before returning.
func (g *Gallery) Version() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.txid
}

// Index returns an index of the gallery as of Version or later: after a
// write through this Gallery has returned, the index Index returns holds it
// (read-your-writes: a removed identity is gone, an enrolled one is there).
// The index is cached and shared until the next write; loads run one at a
// time, and an index is never installed over a newer one. The caller must
// not Add to it.
func (g *Gallery) Index() (*Index, error) {
	if ix := g.fresh(); ix != nil {
		return ix, nil
	}
	g.loading.Lock()
	defer g.loading.Unlock()
	if ix := g.fresh(); ix != nil { // loaded while we waited
		return ix, nil
	}
	ix, err := g.LoadIndex()
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	// The load's transaction began after every write that had returned
	// before this call, so ix serves this call; it is cached only if no
	// write committed since (and never over a newer one).
	if ix.version >= g.txid && (g.index == nil || ix.version > g.index.version) {
		g.index = ix
	}
	g.mu.Unlock()
	return ix, nil
}

// fresh returns the cached index if it is as new as the newest write.
func (g *Gallery) fresh() *Index {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.index != nil && g.index.version >= g.txid {
		return g.index
	}
	return nil
}

// Search returns the best k identities for query (see Searcher.Search),
// using the index of Index: a write that has returned is seen by every
// later Search. For many queries without allocation use Index (or
// LoadIndex) and a Searcher.
func (g *Gallery) Search(query []float32, k int) ([]Match, error) {
	ix, err := g.Index()
	if err != nil {
		return nil, err
	}
	s := ix.NewSearcher()
	defer s.Close()
	m, err := s.Search(query, k)
	return append([]Match(nil), m...), err
}
