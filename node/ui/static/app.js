// sovra dashboard: live updates. The page works without this script;
// with it, the parts of a page marked data-live follow the cluster: on
// each event of the node's stream (/ui/events) the page is fetched again
// and the parts that changed are swapped in place, keeping the focus and
// the open/closed state of <details>.
"use strict";
(function () {
  var body = document.body;
  if (!body.hasAttribute("data-live-page") || !window.EventSource || !window.fetch) {
    return;
  }
  var tick = body.hasAttribute("data-tick");
  var status = document.getElementById("live-status");
  var dot = document.getElementById("live-dot");
  var busy = false;
  var again = false;

  function setState(text, bad) {
    if (text && status) {
      status.textContent = text;
    }
    if (dot) {
      dot.className = bad ? "dot dot-off" : "dot dot-on";
    }
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (resp) {
        if (resp.redirected && new URL(resp.url).pathname.indexOf("/ui/signin") === 0) {
          location.assign(resp.url);
          return null;
        }
        return resp.text();
      })
      .then(function (html) {
        if (html) {
          swap(html);
        }
      })
      .catch(function () {
        setState("Live updates paused: the node did not answer.", true);
      })
      .finally(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function liveIDs(root) {
    return Array.prototype.map.call(root.querySelectorAll("[data-live]"), function (e) { return e.id; }).join(" ");
  }

  // focusKey names the focused element so that its twin can be focused
  // after a swap: by id, else by link target and text.
  function focusKey() {
    var el = document.activeElement;
    if (!el || el === body) {
      return null;
    }
    return { id: el.id, href: el.getAttribute("href"), text: el.textContent };
  }

  function restoreFocus(key) {
    if (!key || document.activeElement !== body) {
      return;
    }
    var el = key.id ? document.getElementById(key.id) : null;
    if (!el && key.href) {
      el = Array.prototype.find.call(document.querySelectorAll("a[href]"), function (a) {
        return a.getAttribute("href") === key.href && a.textContent === key.text;
      });
    }
    if (el) {
      el.focus({ preventScroll: true });
    }
  }

  function openDetails() {
    var open = {};
    Array.prototype.forEach.call(document.querySelectorAll("details[id]"), function (d) { open[d.id] = d.open; });
    return open;
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var main = document.getElementById("main");
    var fresh = doc.getElementById("main");
    if (!main || !fresh) {
      return;
    }
    var key = focusKey();
    var open = openDetails();
    if (liveIDs(doc) !== liveIDs(document)) {
      main.replaceChildren.apply(main, Array.prototype.map.call(fresh.childNodes, function (n) { return document.importNode(n, true); }));
    } else {
      Array.prototype.forEach.call(doc.querySelectorAll("[data-live]"), function (n) {
        var old = document.getElementById(n.id);
        if (!old) {
          return;
        }
        Array.prototype.forEach.call(n.querySelectorAll("details[id]"), function (d) {
          if (d.id in open) {
            d.open = open[d.id];
          }
        });
        if (old.innerHTML !== n.innerHTML) {
          old.replaceWith(document.importNode(n, true));
        }
      });
    }
    restoreFocus(key);
    var st = doc.getElementById("live-status");
    if (st) {
      setState(st.textContent, false);
    }
    document.title = doc.title;
  }

  var events = new EventSource(body.getAttribute("data-events"));
  var seen = false;
  events.addEventListener("hello", function () {
    setState(null, false);
    // A stream opened again may have missed changes meanwhile.
    if (seen) {
      refresh();
    }
    seen = true;
  });
  events.addEventListener("change", refresh);
  if (tick) {
    events.addEventListener("tick", refresh);
  }
  events.addEventListener("signout", function () {
    events.close();
    location.reload();
  });
  events.onerror = function () {
    setState(null, true);
    if (events.readyState === EventSource.CLOSED) {
      setState("Live updates stopped: reload the page.", true);
      refresh();
    }
  };
})();
