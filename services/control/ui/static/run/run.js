// The run page (/ui/runs/{id}): the workflow graph (cytoscape + dagre), the answers of the action
// forms' API calls (their bodies are built by ui.js's jetloom-json extension), and keeping the
// state slider in step with the live log.
(function () {
  "use strict";

  // ---- answers of the API ---------------------------------------------------------------------
  function show(form, text, ok, href) {
    const out = form.querySelector(".result");
    if (!out) return;
    out.textContent = text;
    out.className = "result " + (ok ? "ok" : "error");
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = href.split("/").pop();
      a.className = "new-run";
      out.append(" ", a);
    }
  }

  function ended() {
    const header = document.querySelector(".run-header");
    return header && ["completed", "failed", "cancelled"].includes(header.dataset.status);
  }

  document.body.addEventListener("htmx:afterRequest", function (evt) {
    const form = evt.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("action")) return;
    const xhr = evt.detail.xhr;
    let answer = {};
    try { answer = JSON.parse(xhr.responseText || "{}"); } catch (e) { answer = { error: xhr.responseText }; }
    if (xhr.status >= 400 || xhr.status === 0) {
      show(form, (xhr.status || "network") + ": " + (answer.error || xhr.statusText || "request failed"), false);
      return;
    }
    const was = ended();
    if (form.classList.contains("send-event")) show(form, "sent " + answer.type + " (seq " + answer.seq + ")", true);
    else if (form.classList.contains("cancel")) show(form, "cancel recorded", true);
    else if (form.classList.contains("retry")) show(form, "retrying " + answer.step + " (attempt " + answer.attempt + ")", true);
    else if (form.classList.contains("rollback")) {
      const steps = (answer.resumed || []).map(function (r) { return r.step + "@" + r.trigger; }).join(", ");
      show(form, "rolled back to seq " + answer.to_seq + " (marker seq " + answer.marker_seq + ")" + (steps ? "; rerunning " + steps : ""), true);
    } else if (form.classList.contains("fork")) show(form, "forked at seq " + answer.at_seq + " into", true, "/ui/runs/" + answer.run_id);
    // the live stream closes when the run ends: a retry or rollback reopens the run, so load it anew
    if (was && (form.classList.contains("retry") || form.classList.contains("rollback"))) window.location.reload();
  });

  // ---- the workflow graph -----------------------------------------------------------------------
  const STYLE = [
    { selector: "node", style: { "label": "data(label)", "shape": "round-rectangle", "width": function (n) { return Math.max(60, 8 * n.data("label").length + 20); },
      "height": 30, "text-valign": "center", "font-size": 12, "background-color": "#eef1f5", "border-width": 1,
      "border-color": "#8a94a6", "color": "#1d2433" } },
    { selector: "node.terminal", style: { "shape": "ellipse", "background-color": "#f7f7f7", "font-size": 11 } },
    { selector: "node.ran", style: { "background-color": "#d7f0dd", "border-color": "#2e8b57", "border-width": 2 } },
    { selector: "node.running", style: { "background-color": "#dbe8fb", "border-color": "#2f6fd6", "border-width": 2 } },
    { selector: "node.waiting", style: { "background-color": "#fdf0c4", "border-color": "#c08a00", "border-width": 3 } },
    { selector: "node.failed", style: { "background-color": "#f9d6d5", "border-color": "#c0392b", "border-width": 3 } },
    { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5,
      "line-color": "#9aa3b2", "target-arrow-color": "#9aa3b2", "label": "data(label)", "font-size": 10,
      "text-background-color": "#ffffff", "text-background-opacity": 1, "text-background-padding": "2px", "color": "#4a5366" } },
  ];

  function graphSteps() {
    const el = document.getElementById("run-graph-steps");
    return el ? JSON.parse(el.textContent) : {};
  }

  function paint(cy, steps) {
    cy.nodes().forEach(function (n) {
      if (n.hasClass("terminal")) return;
      n.removeClass("ran running waiting failed");
      if (steps[n.id()]) n.addClass(steps[n.id()]);
    });
    const stop = cy.getElementById("_stop");
    const header = document.querySelector(".run-header");
    if (stop.length && header) stop.toggleClass("ran", header.dataset.status === "completed");
  }

  function drawGraph() {
    const box = document.getElementById("run-graph");
    const data = document.getElementById("run-graph-data");
    if (!box || !data || typeof cytoscape === "undefined") return null;
    if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre);
    const cy = cytoscape({
      container: box,
      elements: JSON.parse(data.textContent),
      style: STYLE,
      layout: { name: "dagre", rankDir: "LR", nodeSep: 25, rankSep: 70, fit: true, padding: 12 },
      maxZoom: 1.3,
      userZoomingEnabled: false,
      boxSelectionEnabled: false,
      autoungrabify: true,
    });
    paint(cy, graphSteps());
    return cy;
  }

  // ---- state slider -----------------------------------------------------------------------------
  function follow() {
    const header = document.querySelector(".run-header");
    const slider = document.getElementById("state-at");
    if (!header || !slider) return;
    const last = parseInt(header.dataset.lastSeq, 10);
    const atEnd = parseInt(slider.value, 10) >= parseInt(slider.max, 10);
    slider.max = String(last);
    document.getElementById("state-at-max").textContent = String(last);
    for (const id of ["rollback-to", "fork-at"]) {
      const input = document.getElementById(id);
      if (input) input.max = String(last);
    }
    if (atEnd && parseInt(slider.value, 10) !== last) {
      slider.value = String(last);
      document.getElementById("state-at-value").textContent = String(last);
      htmx.trigger("#state-form", "submit");
    }
  }

  function init() {
    const slider = document.getElementById("state-at");
    if (slider) {
      slider.addEventListener("input", function () {
        document.getElementById("state-at-value").textContent = slider.value;
      });
    }
    window.jlGraph = drawGraph();
    document.body.addEventListener("htmx:afterSwap", function (evt) {
      if (evt.detail.target && evt.detail.target.id === "run-panels") {
        if (window.jlGraph) paint(window.jlGraph, graphSteps());
        follow();
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
