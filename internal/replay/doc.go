// Package replay reads recorded sample streams — a `stormguard watch
// --journal` directory or one capture file, plain or gzip-compressed — and
// runs the detector over them as if live, with the recording's own
// timestamps. It is the engine of `stormguard replay` and of the scenario
// corpus test (internal/corpus).
//
// It also reads detector configuration files (YAML or JSON whose keys are
// detect.Config's fields in snake_case; unknown keys are an error).
package replay
