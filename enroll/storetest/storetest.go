// Package storetest is the behaviour suite every enroll.Store meets: the
// bbolt file (*enroll.Gallery) and the PostgreSQL store run the same cases,
// so that the suite, not either implementation, is the specification.
//
// A back end's test calls Run with a function that makes a new, empty store
// for each case:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend {
//			path := filepath.Join(t.TempDir(), "g.db")
//			return storetest.Backend{
//				Open: func(o enroll.Options) (enroll.Store, error) { return enroll.Open(path, o) },
//				Raw:  func() ([]byte, error) { return os.ReadFile(path) },
//			}
//		})
//	}
package storetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// Model and Head are the tags the suite opens its stores with.
const (
	Model = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
	Head  = "arcface-test"
)

// Backend is one store under test.
type Backend struct {
	// Open opens the store: every call opens the same store (the suite
	// closes a handle before it opens the next, unless it says otherwise).
	Open func(opts enroll.Options) (enroll.Store, error)
	// Raw, when not nil, returns every byte the store keeps (the file, a
	// dump of the tables): the suite checks that no API key is in it in
	// clear.
	Raw func() ([]byte, error)
	// Short makes the concurrency cases smaller (e.g. under -race).
	Short bool
}

// Run runs every case, each on a new, empty store made by fresh.
func Run(t *testing.T, fresh func(t *testing.T) Backend) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Identities", testIdentities},
		{"Persistence", testPersistence},
		{"Invalid", testInvalid},
		{"Names", testNames},
		{"NamesRefused", testNamesRefused},
		{"MetadataLimits", testMetadataLimits},
		{"MetadataLimitsConfigured", testMetadataLimitsConfigured},
		{"Update", testUpdate},
		{"Templates", testTemplates},
		{"FindPhoto", testFindPhoto},
		{"ListPage", testListPage},
		{"ListPrefix", testListPrefix},
		{"EnrollBatch", testEnrollBatch},
		{"APIKeys", testAPIKeys},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"ModelTags", testModelTags},
		{"Dimension", testDimension},
		{"NoModel", testNoModel},
		{"ReadOnly", testReadOnly},
		{"Search", testSearch},
		{"EnrollSameNameConcurrent", testEnrollSameName},
		{"PagingUnderInserts", testPagingUnderInserts},
		{"ReadYourWrites", testReadYourWrites},
		{"Import", testImport},
		{"Crops", testCrops},
		{"CropsRefused", testCropsRefused},
		{"CropsBatchImport", testCropsBatchImport},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer catch(t)
			c.fn(t, fresh(t))
		})
	}
}

// open opens b with opts and closes it when the test ends (Close twice is
// the caller's problem: use reopen to close early).
func open(t *testing.T, b Backend, opts enroll.Options) enroll.Store {
	t.Helper()
	s, err := b.Open(opts)
	if err != nil {
		t.Fatalf("open store (%+v): %v", opts, err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	return &closer{Store: s, closed: &closed}
}

// closer makes a second Close of a store a no-op.
type closer struct {
	enroll.Store
	closed *bool
}

func (c *closer) Close() error {
	if *c.closed {
		return nil
	}
	*c.closed = true
	return c.Store.Close()
}

// unwrap returns the store under the suite's wrapper.
func unwrap(s enroll.Store) enroll.Store {
	if c, ok := s.(*closer); ok {
		return c.Store
	}
	return s
}

// opts are the suite's usual options.
func opts() enroll.Options { return enroll.Options{Model: Model, Head: Head} }

// reopen closes s and opens the store again.
func reopen(t *testing.T, b Backend, s enroll.Store, o enroll.Options) enroll.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return open(t, b, o)
}

func randEmb(rng *rand.Rand, dim int) []float32 {
	e := make([]float32, dim)
	for i := range e {
		e[i] = float32(rng.NormFloat64())
	}
	return e
}

func sha(i int) string { return fmt.Sprintf("%064x", i+1) }

// sameBits reports whether two embeddings are equal bit for bit.
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// sameTime reports whether two times are equal to the microsecond (the
// resolution of PostgreSQL's timestamptz).
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Microsecond && d < time.Microsecond
}

// recent reports whether tm is a time of this test run.
func recent(tm time.Time, since time.Time) bool {
	return !tm.IsZero() && !tm.Before(since.Add(-2*time.Second)) && !tm.After(time.Now().Add(2*time.Second))
}

// failure is what must panics with; Run turns it into t.Fatal.
type failure struct {
	where string
	err   error
}

// must returns v, or fails the case (from the case's own goroutine only)
// when err is not nil.
func must[T any](v T, err error) T {
	if err != nil {
		_, file, line, _ := runtime.Caller(1)
		panic(failure{fmt.Sprintf("%s:%d", filepath.Base(file), line), err})
	}
	return v
}

// must2 is must for two values.
func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		_, file, line, _ := runtime.Caller(1)
		panic(failure{fmt.Sprintf("%s:%d", filepath.Base(file), line), err})
	}
	return a, b
}

// catch turns a failure panic into t.Fatal.
func catch(t *testing.T) {
	if r := recover(); r != nil {
		if f, ok := r.(failure); ok {
			t.Fatalf("%s: %v", f.where, f.err)
		}
		panic(r)
	}
}

func is(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// strp returns a pointer to v (for Edit.Metadata).
func strp(v string) *string { return &v }
