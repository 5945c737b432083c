package main

import (
	"flag"
	"strconv"
	"strings"
)

// parseInterspersed parses flags that may come before, between or after the positional
// arguments, and returns the positional arguments in order. A negative number such as "-5"
// is a positional argument, not a flag. Everything after "--" is positional.
//
// The standard flag package stops at the first positional argument, so this hands it one flag
// (and its value, when the value is a separate argument) at a time.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		arg := args[0]
		if arg == "--" {
			return append(positional, args[1:]...), nil
		}
		if !isFlag(arg) {
			positional = append(positional, arg)
			args = args[1:]
			continue
		}

		n := flagArgCount(fs, arg)
		if n > len(args) {
			n = len(args)
		}
		if err := fs.Parse(args[:n]); err != nil {
			return nil, err
		}
		args = args[n:]
	}
	return positional, nil
}

func isFlag(arg string) bool {
	if len(arg) < 2 || arg[0] != '-' {
		return false
	}
	if _, err := strconv.ParseInt(arg, 10, 64); err == nil {
		return false
	}
	return true
}

// flagArgCount returns how many arguments the flag at arg takes up: one for "-name=value", a
// boolean flag or an unknown flag (which fs.Parse then reports), and two for "-name value".
func flagArgCount(fs *flag.FlagSet, arg string) int {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return 1
	}
	f := fs.Lookup(name)
	if f == nil {
		return 1
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return 1
	}
	return 2
}
