//go:build !race

package enroll

const raceEnabled = false

// RaceEnabled is raceEnabled for the external tests.
const RaceEnabled = raceEnabled
