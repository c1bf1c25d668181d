package enroll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzRecords feeds arbitrary keys and values to the record decoders: they
// never panic, and a template they accept encodes back to what they read.
func FuzzRecords(f *testing.F) {
	t0 := Template{ID: 7, IdentityID: 3, Embedding: []float32{1, -2, 0.5}, Source: "a.jpg", PhotoSHA256: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}
	v, _ := encodeTemplate(t0)
	key := append(u64(3), u64(7)...)
	f.Add(key, v)
	f.Add(u64(3), sealIdentity(u64(3), []byte(`{"name":"Ann","templates":1}`)))
	f.Add([]byte{}, []byte{2, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if tp, err := decodeTemplate(k, v, nil); err == nil {
			back, err := encodeTemplate(tp)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again, err := decodeTemplate(k, back, nil)
			if err != nil || !reflect.DeepEqual(again, tp) {
				t.Fatalf("round trip: %+v %v, want %+v", again, err, tp)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeTemplate: %v is not ErrCorrupt", err)
		}
		emb := make([]float32, 3)
		_ = decodeEmbedding(k, v, emb)
		_ = photoSHA(v)
		if len(k) == 8 {
			if _, err := decodeIdentity(binary.BigEndian.Uint64(k), v); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeIdentity: %v is not ErrCorrupt", err)
			}
		}
		_, _ = openIdentity(k, v)
	})
}

// FuzzGalleryFile opens arbitrary bytes as a gallery file and uses it: every
// step returns an error or an answer, and none panics or crashes.
func FuzzGalleryFile(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := g.Enroll(fmt.Sprint("p", i), map[string]string{"k": "v"}, []Template{{Embedding: []float32{1, float32(i), 2}}}); err != nil {
			f.Fatal(err)
		}
	}
	g.Close()
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(seed[:8192])
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "g.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		g, err := Open(p, Options{Model: testModel, Timeout: -1})
		if err != nil {
			return
		}
		defer g.Close()
		_, _ = g.List()
		_, _, _ = g.ListPage(0, 2)
		_, _ = g.GetByName("p1")
		_, _ = g.Templates(1)
		_, _ = g.Search([]float32{1, 1, 2}, 2)
		_, _, _ = g.Enroll("new", nil, []Template{{Embedding: []float32{3, 2, 1}}})
		_ = g.Remove(2)
		_, _ = g.Check()
	})
}
