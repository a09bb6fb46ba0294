// Package e2e holds end-to-end tests: a real sovra node on loopback, over
// the Ollama simulator or a real Ollama server, checked with the official
// client SDKs that users point at it.
package e2e
