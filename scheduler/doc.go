// Package scheduler will own pure placement: a snapshot of the desired state
// in, a plan out. It is empty until the placement work lands.
package scheduler
