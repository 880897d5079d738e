// Package config loads each binary's configuration from the environment
// (and its command line). One Config type per binary (Gateway, Listener,
// Emulator), each with its own prefix and the same Load shape:
// LoadX(args, out) reads PREFIX_* variables, parses args as flags (-h
// prints the usage table on out and returns flag.ErrHelp) and validates,
// returning every problem at once, each naming its variable and never a
// secret's value. Packages other than cmd never read the environment;
// mapping a Config to a package's own config type is that package's (or
// the command's) job.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/kelseyhightower/envconfig"
)

// validatable is a config with cross-field rules.
type validatable interface{ Validate() error }

// command is one binary's command line for load.
type command struct {
	name  string                 // in errors and usage
	head  string                 // usage text before the flags
	flags func(fs *flag.FlagSet) // binds the binary's flags; nil: only -h
}

// load fills c from PREFIX_* variables (defaults for the unset ones),
// then from args as flags (flags win), checks validator tags and
// c.Validate, and returns every problem at once: unknown variables (with
// the closest known name), unparsable values (with the expected form) and
// invalid ones. With -h it prints the usage on out and returns
// flag.ErrHelp.
func load(prefix string, c validatable, cmd command, args []string, out io.Writer) error {
	problems := unknownVariables(prefix, c)
	problems = append(problems, fromEnv(prefix, c)...)

	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(out)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprint(out, cmd.head)
		if cmd.flags != nil {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
		fmt.Fprintf(out, "\n%s", usage(prefix, c))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q (configuration is by %s_* variables; see %s -h)", fs.Arg(0), prefix, cmd.name))
	}
	problems = append(problems, validate(prefix, c)...)
	if len(problems) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// usage is the table of c's variables with type, default and description,
// aligned.
func usage(prefix string, c any) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 1, 0, 2, ' ', 0)
	_ = envconfig.Usagef(prefix, reflect.New(reflect.TypeOf(c).Elem()).Interface(), tw, envconfig.DefaultTableFormat)
	_ = tw.Flush()
	// The shared Relay block's descriptions say PREFIX_ for the binary's own.
	return strings.ReplaceAll(b.String(), "PREFIX_", prefix+"_")
}

// validate checks c's validator tags and c.Validate and returns every
// problem, naming variables under prefix and never the values of secrets.
func validate(prefix string, c validatable) []string {
	var problems []string
	v := validator.New(validator.WithRequiredStructEnabled())
	if err := v.Struct(c); err != nil {
		var ve validator.ValidationErrors
		if !errors.As(err, &ve) {
			return []string{err.Error()}
		}
		for _, fe := range ve {
			problems = append(problems, fmt.Sprintf("%s: %s", envName(prefix, c, fe.StructField()), describe(fe)))
		}
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n  ")...)
	}
	return problems
}

// field is one configuration variable: its name and where it is stored.
type field struct {
	name   string // the variable
	goName string // the struct field
	tag    reflect.StructTag
	v      reflect.Value
}

// fields lists the variables of the struct c points to, embedded structs
// (such as Relay) under the same prefix, as envconfig names them: the
// split_words name, or the `envconfig` tag's where a field's Go name does
// not split into the variable's words (TLSCAFile → TLS_CA_FILE). Loading
// never falls back to unprefixed names.
func fields(prefix string, c any) []field {
	var out []field
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			switch {
			case !f.IsExported():
			case f.Anonymous && f.Type.Kind() == reflect.Struct:
				walk(v.Field(i))
			default:
				name := splitWords(f.Name)
				if n, ok := f.Tag.Lookup("envconfig"); ok {
					name = n
				}
				out = append(out, field{name: prefix + "_" + name, goName: f.Name, tag: f.Tag, v: v.Field(i)})
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
	return out
}

// fromEnv sets every field from its variable, or from its default when
// the variable is unset, and returns one problem per variable that does
// not parse, naming it and the expected form, never the value.
func fromEnv(prefix string, c any) []string {
	var problems []string
	for _, f := range fields(prefix, c) {
		s, ok := os.LookupEnv(f.name)
		if !ok {
			if def, ok := f.tag.Lookup("default"); ok {
				_ = set(f.v, def)
			}
			continue
		}
		if err := set(f.v, s); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.name, err))
			if def, ok := f.tag.Lookup("default"); ok {
				_ = set(f.v, def) // so validation does not report it again
			}
		}
	}
	return problems
}

// setDefaults sets every field of the struct c points to from its
// `default` tag, without reading the environment.
func setDefaults(c any) {
	for _, f := range fields("", c) {
		if def, ok := f.tag.Lookup("default"); ok {
			if err := set(f.v, def); err != nil {
				panic("config: bad default of " + f.name + ": " + err.Error())
			}
		}
	}
}

// set parses s into v; its errors say the expected form.
func set(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not a duration: write a number with a unit, such as 10s, 1m30s or 500ms")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not a boolean: write true or false")
		}
		v.SetBool(b)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 0, v.Type().Bits())
		if err != nil {
			return errors.New("not a whole number (write bytes as a plain number, such as 1048576)")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		if strings.TrimSpace(s) != "" {
			list = strings.Split(s, ",")
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// unknownVariables names every PREFIX_* variable that is not one of c's,
// with the closest known name when one is near (a typo would otherwise be
// silently ignored). Values are never shown.
func unknownVariables(prefix string, c any) []string {
	known := map[string]bool{}
	var names []string
	for _, f := range fields(prefix, c) {
		known[f.name] = true
		names = append(names, f.name)
	}
	var problems []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, prefix+"_") || known[k] {
			continue
		}
		msg := k + ": unknown variable"
		if near := closest(k, names); near != "" {
			msg += "; did you mean " + near + "?"
		}
		problems = append(problems, msg)
	}
	return problems
}

// closest returns the name nearest to s by edit distance, or "" when none
// is within a third of s's length.
func closest(s string, names []string) string {
	best, bestD := "", len(s)/3+1
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// envName returns the variable of c's field named goName under prefix.
func envName(prefix string, c any, goName string) string {
	for _, f := range fields(prefix, c) {
		if f.goName == goName {
			return f.name
		}
	}
	return goName
}

// splitWords turns "MaxBodyBytes" into "MAX_BODY_BYTES" like envconfig.
func splitWords(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if i > 0 && isUpper(c) && (!isUpper(r[i-1]) || i+1 < len(r) && !isUpper(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(c)
	}
	return strings.ToUpper(b.String())
}

func isUpper(c rune) bool { return c >= 'A' && c <= 'Z' }

// describe states a validation failure without the offending value.
func describe(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min", "gte":
		return "must be at least " + fe.Param()
	case "max", "lte":
		return "must be at most " + fe.Param()
	case "oneof":
		return "must be one of " + fe.Param()
	case "hostname_port":
		return "must be host:port"
	case "url", "http_url":
		return "must be a URL"
	}
	return "fails rule " + fe.Tag()
}
