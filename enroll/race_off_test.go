//go:build !race

package enroll

const raceEnabled = false
