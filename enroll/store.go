package enroll

// Store is a gallery: identities, their templates, API keys and
// idempotency records, tagged with the backbone and head that made the
// templates, and an in-memory index for exact 1:N search.
//
// Two implementations exist: *Gallery, the embedded bbolt file (the
// default, for one machine), and the PostgreSQL store of package
// enroll/pgstore, shared by several serve nodes. Both pass the same
// behaviour suite (package enroll/storetest). Methods are safe for
// concurrent use. Errors are the sentinels of this package (ErrNotFound,
// ErrExists, ErrInvalid, ErrModelMismatch, ErrTooLarge, ...), wrapped with
// context, whichever the back end.
//
// What only the file has (Path, Check, Backup, CopyTo) stays on *Gallery.
type Store interface {
	// Meta describes the gallery: schema, model and head tags, dimension.
	Meta() Meta
	// Version is the newest change this handle has committed or seen: the
	// bbolt transaction id, or the PostgreSQL change-log sequence. An Index
	// with Version() >= v reflects every change up to v.
	Version() uint64
	// Close releases the store (file lock, database connections).
	Close() error

	// AddIdentity creates an identity with no template (ErrExists when the
	// name is taken).
	AddIdentity(name string, metadata map[string]string) (Identity, error)
	// AddTemplates adds templates to identity id in one transaction.
	AddTemplates(id uint64, ts []Template) ([]Template, error)
	// AddTemplatesOnce is AddTemplates named by an idempotency key: a retry
	// with the same key and digest replays the first answer.
	AddTemplatesOnce(id uint64, ts []Template, key, digest string, answer func(Identity, []Template) (int, []byte, error)) (rec OnceRecord, replay bool, err error)
	// LookupOnce returns the remembered record of idempotency key key.
	LookupOnce(key string) (rec OnceRecord, ok bool, err error)
	// Enroll adds templates to the identity called name, creating it.
	Enroll(name string, metadata map[string]string, ts []Template) (Identity, []Template, error)
	// EnrollBatch enrolls many items in one transaction.
	EnrollBatch(items []BatchItem, allowDuplicates bool) ([]BatchResult, error)
	// Update renames identity id and/or edits its metadata.
	Update(id uint64, e Edit) (Identity, error)
	// Rename gives identity id a new, unused name.
	Rename(id uint64, name string) error
	// Remove deletes identity id and its templates.
	Remove(id uint64) error
	// RemoveTemplate deletes template tid of identity id.
	RemoveTemplate(id, tid uint64) (Identity, error)

	// Get returns identity id (ErrNotFound).
	Get(id uint64) (Identity, error)
	// GetByName returns the identity called name (ErrNotFound).
	GetByName(name string) (Identity, error)
	// Resolve finds an identity by name, or else by decimal id.
	Resolve(ref string) (Identity, error)
	// List returns every identity, by id.
	List() ([]Identity, error)
	// ListPage returns up to limit identities with id > after, by id, and
	// the cursor of the next page (0 at the end).
	ListPage(after uint64, limit int) (page []Identity, next uint64, err error)
	// ListPrefix returns up to limit identities whose name starts with
	// prefix, by name, after the name after, and the next page's cursor
	// ("" at the end).
	ListPrefix(prefix, after string, limit int) (page []Identity, next string, err error)
	// Templates returns the templates of identity id, in enrolment order.
	Templates(id uint64) ([]Template, error)
	// TemplatesPage returns up to limit templates of identity id with id >
	// after, and the next page's cursor (0 at the end).
	TemplatesPage(id, after uint64, limit int) (page []Template, next uint64, err error)
	// TemplateCrop returns the JPEG crop kept for template tid of identity
	// id: ErrNotFound when the identity is absent, ErrTemplateNotFound when
	// the template is, ErrNoCrop when it has no crop.
	TemplateCrop(id, tid uint64) ([]byte, error)
	// FindPhoto returns the templates enrolled from the photo whose sha256
	// (hex) is given.
	FindPhoto(sha256hex string) ([]Template, error)

	// LoadIndex reads every template into a new in-memory Index.
	LoadIndex() (*Index, error)
	// Index returns an index at least as new as every write that returned.
	Index() (*Index, error)
	// Search returns the best k identities for query.
	Search(query []float32, k int) ([]Match, error)

	// CreateAPIKey makes a new admin key for name; the key is returned once.
	CreateAPIKey(name string) (string, APIKey, error)
	// CreateScopedAPIKey makes a new key with the given scopes.
	CreateScopedAPIKey(name string, scopes []string) (string, APIKey, error)
	// CheckAPIKey returns the record of key, or ErrBadKey.
	CheckAPIKey(key string) (APIKey, error)
	// APIKeys lists the keys (without the keys themselves).
	APIKeys() ([]APIKey, error)
	// RevokeAPIKey deletes every key whose prefix is prefix.
	RevokeAPIKey(prefix string) (int, error)
}

var _ Store = (*Gallery)(nil)

// APIKeyRecord is an API key as a store keeps it: its hash (the hex sha256
// of the key, see HashAPIKey), never the key itself.
type APIKeyRecord struct {
	// Hash is the hex sha256 of the key.
	Hash string `json:"hash"`
	APIKey
}

// HashAPIKey is the hash a store keeps of key (hex sha256).
func HashAPIKey(key string) string { return string(keyHash(key)) }

// Importer is implemented by a store that can take a copy of another
// store's records as they are (`facever gallery migrate`): identities keep
// their ids and created times, templates their ids, created times and
// embeddings bit for bit, API keys their hashes. Both back ends implement
// it.
type Importer interface {
	// ImportIdentity stores it (ID, Name, Metadata, Created; Templates is
	// ignored) with its templates (ID, Embedding, Source, PhotoSHA256,
	// Created, Crop; IdentityID must be it.ID), in one transaction, checked
	// as Enroll checks them (ErrInvalid, ErrTooLarge, ErrDimension,
	// ErrNoModel; CheckCrop).
	// ErrExists when the id or the name is taken. Ids given out later stay
	// above every imported id.
	ImportIdentity(it Identity, ts []Template) error
	// ImportAPIKey stores a key record by its hash (ErrExists when that hash
	// is there; ErrInvalid for a hash that is not 64 hex digits).
	ImportAPIKey(rec APIKeyRecord) error
	// APIKeyRecords lists the key records with their hashes.
	APIKeyRecords() ([]APIKeyRecord, error)
}

var _ Importer = (*Gallery)(nil)
