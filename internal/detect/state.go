package detect

import "fmt"

// State is the storm state of one target. Its numeric value is the
// stormguard_storm_state metric: 0 calm, 1 surge, 2 storm, 3 recovering.
type State int

const (
	// Calm: nothing unusual.
	Calm State = 0
	// Surge: early warning. New connections, queue occupancy, a forecast or
	// latency say a storm is building, but nothing is dropped yet.
	Surge State = 1
	// Storm: connections are being dropped or refused now.
	Storm State = 2
	// Recovering: drops stopped; waiting for the calm period to pass.
	Recovering State = 3
)

var stateNames = [...]string{"calm", "surge", "storm", "recovering"}

// Valid reports whether s is one of the four states.
func (s State) Valid() bool { return s >= Calm && s <= Recovering }

// Code is the value of the stormguard_storm_state metric.
func (s State) Code() int { return int(s) }

// String returns the contract name: calm, surge, storm or recovering.
func (s State) String() string {
	if !s.Valid() {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// ParseState parses a contract name.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return Calm, fmt.Errorf("parse storm state %q: want calm, surge, storm or recovering", name)
}

// MarshalText encodes the state as its name, so JSON shows "storm".
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("marshal storm state: invalid value %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
