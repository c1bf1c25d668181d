package models

import "testing"

// TestIdentificationThreshold: 1:N has its own default, higher than 1:1
// (a search has N chances of a false match), and an unmeasured backbone
// falls back to its 1:1 threshold.
func TestIdentificationThreshold(t *testing.T) {
	for _, m := range Backbones {
		if id := m.Identification(); id < m.Threshold {
			t.Errorf("%s: identification threshold %.3f below the verification threshold %.3f", m.Name, id, m.Threshold)
		}
	}
	if Feature.Identification() != 0.495 || Feature.Threshold != 0.38 {
		t.Errorf("fr_feature: %v / %v", Feature.Identification(), Feature.Threshold)
	}
	if m := (Model{Threshold: 0.4}); m.Identification() != 0.4 {
		t.Errorf("unmeasured: %v", m.Identification())
	}
}
