//go:build !linux

package main

import "syscall"

// childAttr has nothing to add where parent-death signals do not exist.
func childAttr() *syscall.SysProcAttr { return nil }
