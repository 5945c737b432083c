package main

func runAdd(args []string) int   { return 2 }
func runGet(args []string) int   { return 2 }
func runClear(args []string) int { return 2 }
func runBench(args []string) int { return 2 }
