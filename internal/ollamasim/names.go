package ollamasim

import (
	"fmt"
	"net/http"

	ollamamodel "github.com/ollama/ollama/types/model"
)

// Ollama checks a model name with its own parser before it looks for the
// model, and each route answers a name the parser refuses in its own way
// (Ollama v0.17.4, checked against the real server by the conformance
// suite in internal/e2e): /api/chat and /api/embeddings say the model is
// required (400), /api/generate that it is not found (404), /api/show and
// /api/embed fail with "unqualified name" (500), /api/delete and
// /api/pull call the name invalid (400).

// validName reports whether Ollama's parser accepts name.
func validName(name string) bool { return ollamamodel.ParseName(name).IsValid() }

// nameRefusal is a route's answer to a name that Ollama's parser refuses.
type nameRefusal func(name string) *httpError

func refuseAsRequired(string) *httpError { return badRequest("model is required") }

func refuseAsNotFound(name string) *httpError {
	return &httpError{http.StatusNotFound, fmt.Sprintf("model '%s' not found", name)}
}

// refuseAsUnqualified is /api/show's answer.
func refuseAsUnqualified(name string) *httpError {
	return &httpError{http.StatusInternalServerError, ollamamodel.Unqualified(ollamamodel.ParseName(name)).Error()}
}

// refuseEmbed is /api/embed's: Ollama parses the name twice, the second
// time from its printed form, before it fails.
func refuseEmbed(name string) *httpError {
	return refuseAsUnqualified(ollamamodel.ParseName(name).String())
}
