package main

import (
	"testing"

	"github.com/facever/facever/internal/pgtest"
)

// TestMain stops the private PostgreSQL cluster of the tests that use one
// (pgtest.URL) when the tests end.
func TestMain(m *testing.M) { pgtest.Main(m) }
