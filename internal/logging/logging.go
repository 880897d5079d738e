// Package logging builds the *slog.Logger each binary writes to stderr from
// its configured level and format. It owns no global logger: cmd builds one
// and injects it into every constructor.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a logger writing to w at level (debug, info, warn or error,
// any case) in format (text or json). An unknown level or format is an
// error. The logger is safe for concurrent use, as w must be.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "text", "json":
		return slog.New(newFastHandler(w, lv, format == "json")), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
