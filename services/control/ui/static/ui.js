// jetloom web UI: the htmx extension "jetloom-json" (a form's inputs as a typed JSON object)
// and what happens after a form that starts a run. No other script runs on the pages.
(function () {
  "use strict";

  // One input's value by its data-type (string, integer, number, boolean, json);
  // undefined leaves the property out (an empty optional input).
  function valueOf(input) {
    var type = input.dataset.type || "string";
    if (type === "boolean") return input.checked;
    var raw = input.value;
    if (raw === "") {
      if (input.dataset.nullable === "true") return null;
      return type === "string" && input.required ? "" : undefined;
    }
    if (type === "integer") return /^-?\d+$/.test(raw.trim()) ? parseInt(raw, 10) : raw;
    if (type === "number") return isNaN(Number(raw)) ? raw : Number(raw);
    if (type === "json") {
      try { return JSON.parse(raw); } catch (e) { return raw; }  // the API names the bad field
    }
    return raw;
  }

  // The form's object: every [data-field] input; with data-json-wrap="data" on the form, the
  // object goes under that key, beside the fields of data-json-extra (a JSON object).
  function encode(form) {
    var fields = {};
    form.querySelectorAll("[data-field]").forEach(function (input) {
      var v = valueOf(input);
      if (v !== undefined) fields[input.dataset.field] = v;
    });
    var wrap = form.dataset.jsonWrap;
    if (!wrap) return fields;
    var body = form.dataset.jsonExtra ? JSON.parse(form.dataset.jsonExtra) : {};
    body[wrap] = fields;
    return body;
  }

  htmx.defineExtension("jetloom-json", {
    onEvent: function (name, evt) {
      if (name === "htmx:configRequest") {
        evt.detail.headers["Content-Type"] = "application/json";
        evt.detail.headers["Accept"] = "application/json";
      }
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/json");
      var form = elt.closest("form") || elt;
      return JSON.stringify(encode(form));
    },
  });

  // The API's answer to a form: its error (the JSON body's "error") shown in the form's
  // .form-error; for data-on-created="run", the new run's page on success.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (!form || !form.matches || !form.matches("form[data-on-created], form[data-show-errors]")) return;
    var xhr = evt.detail.xhr;
    var box = form.querySelector(".form-error");
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300) {
      if (box) box.hidden = true;
      if (form.dataset.onCreated === "run" && body && body.run_id) {
        window.location.assign("/ui/runs/" + encodeURIComponent(body.run_id));
      }
      return;
    }
    if (box) {
      box.textContent = (body && body.error) || ("request failed: HTTP " + xhr.status);
      box.hidden = false;
    }
  });

  // The live badge of the runs list says whether the event stream is connected.
  document.addEventListener("htmx:sseOpen", function () {
    var badge = document.getElementById("live-state");
    if (badge) { badge.classList.add("on"); badge.classList.remove("off"); }
  });
  document.addEventListener("htmx:sseError", function () {
    var badge = document.getElementById("live-state");
    if (badge) { badge.classList.add("off"); badge.classList.remove("on"); }
  });
  // A live row that arrives: the "no runs yet" line goes.
  document.addEventListener("htmx:sseMessage", function () {
    var empty = document.getElementById("no-runs");
    if (empty && document.querySelector("#runs-body tr")) empty.remove();
  });
})();
