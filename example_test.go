package facever_test

import (
	"fmt"
	"log"

	"github.com/facever/facever"
)

// Verify two photos of John Simm, then one of him against John Salley.
func Example() {
	r, err := facever.Open(facever.Options{}) // default models, pure-Go engine
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for _, b := range []string{"John_Simm/000297_00470170.jpg", "John_Salley/000179_02159509.jpg"} {
		d, err := r.VerifyFiles("testdata/johns/John_Simm/000288_00470387.jpg", "testdata/johns/"+b)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(b, "same person:", d.Same)
	}
	// Output:
	// John_Simm/000297_00470170.jpg same person: true
	// John_Salley/000179_02159509.jpg same person: false
}
