package enroll

// What another Store implementation (package enroll/pgstore) needs to
// behave exactly as the file does: the same checks, limits, key format and
// messages.

// CheckMetadata validates metadata as the file does against the limits of
// opts (ErrInvalid, ErrTooLarge).
func CheckMetadata(md map[string]string, opts Options) error {
	return checkMetadata(md, (&Gallery{opts: opts}).limits())
}

// CheckScopes returns scopes in canonical order without repeats, or
// ErrInvalid for none or an unknown one.
func CheckScopes(scopes []string) ([]string, error) { return checkScopes(scopes) }

// CheckOnceKey validates an idempotency key (ErrInvalid).
func CheckOnceKey(key string) error { return checkOnceKey(key) }

// APIKeyPrefix starts every API key.
const APIKeyPrefix = keyPrefix

// CheckModel compares the model and head of a gallery (m) with those of
// opts as Open does: ErrModelMismatch, with the message the file gives, when
// both are known and differ.
func CheckModel(m Meta, opts Options) error {
	g := &Gallery{meta: m, opts: opts}
	return g.checkModel()
}

// SetVersion records the change a loaded index reflects (see
// Index.Version): for stores that load an index themselves.
func (ix *Index) SetVersion(v uint64) { ix.version = v }

// Merged is md with e's metadata edits applied, as Update applies them: a
// nil value deletes its key; the result is a new map, nil when no key is
// left.
func (e Edit) Merged(md map[string]string) map[string]string { return e.merged(md) }
