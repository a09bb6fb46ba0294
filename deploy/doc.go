// Package deploy holds the files that deploy sovra, and the tests that
// check each of them with its own tool:
//
//   - systemd/: the unit and its drop-ins, checked by systemd-analyze
//     (verify, and security for the sandbox's exposure);
//   - docker/: the image's Dockerfile, read statically (no daemon here);
//   - compose/: a three-node cluster beside three Ollamas, checked by
//     Compose's own validator (docker-compose config);
//   - kubernetes/: a kustomize base, built with kustomize's Go API and read
//     as the Kubernetes API's types;
//   - sovra.yaml: the example configuration, loaded by cmd/sovra's tests.
//
// There is no Go code here besides the tests: the Kubernetes modules they
// import are compiled for this package's tests only. The tests skip when a
// tool is missing unless SOVRA_REQUIRE_DEPLOY_TOOLS=1 (scripts/test sets it
// and installs the tools).
package deploy
