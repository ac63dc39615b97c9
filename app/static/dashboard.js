// Slipway dashboard: fills the page from the read API (session cookie) and refreshes it every 5 seconds.
// Data is only ever put into the page as text (never innerHTML), so nothing a CI system reports can run here.
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  const rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  const SVG = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------ small helpers

  /** Create an element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  /** Create an SVG element with attributes. */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  /** "3 minutes ago" for an ISO time. */
  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "";
    const s = Math.round((t - Date.now()) / 1000);
    const abs = Math.abs(s);
    if (abs < 45) return "just now";
    if (abs < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(s / 3600), "hour");
    if (abs < 30 * 86400) return rtf.format(Math.round(s / 86400), "day");
    if (abs < 365 * 86400) return rtf.format(Math.round(s / (30 * 86400)), "month");
    return rtf.format(Math.round(s / (365 * 86400)), "year");
  }

  /** A <time> that shows a relative time and the exact UTC time on hover. */
  function timeEl(iso) {
    if (!iso) return el("span", { class: "muted", text: "—" });
    const exact = new Date(iso);
    return el("time", { datetime: iso, title: exact.toLocaleString(), "data-relative": true, text: ago(iso) });
  }

  /** Refresh every relative time on the page (also between data refreshes). */
  function tickTimes() {
    for (const t of document.querySelectorAll("time[data-relative]")) {
      const text = ago(t.getAttribute("datetime"));
      if (text && t.textContent !== text) t.textContent = text;
    }
  }

  /** A duration in seconds as "2 h 5 min", "3.5 d", "40 s". */
  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "–";
    const s = Number(seconds);
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 48 * 3600) {
      const h = Math.floor(s / 3600), m = Math.round((s % 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    }
    return (s / 86400).toFixed(1).replace(/\.0$/, "") + " d";
  }

  /** Badge colour of an environment: production green, staging yellow, previews purple, others blue. */
  function envTone(name, hints) {
    const n = String(name || "").toLowerCase();
    const h = hints || {};
    if (n === "production" || n === "prod" || h.production) return "production";
    if (n === "staging" || n === "stage") return "staging";
    // Slipway names previews pr-<number> by default; GitHub marks them transient.
    if (h.kind === "preview" || h.transient || /^(pr|review)([-_/]?\d+)$|^(pr|review)[-_/]|preview/.test(n)) {
      return "preview";
    }
    return "other";
  }

  /** An environment badge; hints: kind (from /environments), production and transient (from GitHub). */
  function envBadge(name, hints) {
    const tone = envTone(name, hints);
    const title = `${name} (${tone === "other" ? "environment" : tone})`;
    return el("span", { class: "badge env-" + tone, title, text: name || "—" });
  }

  /** Colour family of a deployment status. */
  function statusTone(status) {
    const s = String(status || "").toLowerCase();
    if (s === "success" || s === "active") return "ok";
    if (s === "failure" || s === "failed" || s === "error") return "fail";
    if (s === "pending" || s === "queued" || s === "in_progress") return "busy";
    return "idle";
  }

  function statusPill(status) {
    const label = String(status || "unknown").replace(/_/g, " ");
    return el("span", { class: "status status-" + statusTone(status) },
      el("span", { class: "status-dot", "aria-hidden": "true" }), label);
  }

  /** The commit link (or plain text when there is no repository or sha). */
  function commitLink(base, repository, sha, version) {
    const short = sha ? String(sha).slice(0, 7) : "";
    const text = version || short || "—";
    if (!sha || !repository || !/^[\w.-]+\/[\w.-]+$/.test(repository)) {
      return el("span", { class: version ? "" : "mono", title: sha || null, text });
    }
    const href = `${base}/${repository}/commit/${sha}`;
    const link = el("a", { href, title: `Commit ${sha}`, class: version ? "" : "mono", text });
    return version && short ? el("span", {}, link, " ", el("span", { class: "sha mono", text: short })) : link;
  }

  function deployerName(d) {
    if (!d) return "";
    if (typeof d === "string") return d;
    return d.name || d.login || d.email || (d.id !== undefined && d.id !== null ? String(d.id) : "");
  }

  // ------------------------------------------------------------------ pages without data

  /** One-click copy of a value shown once (clipboard API, with the old selection fallback). */
  function initCopy() {
    for (const button of document.querySelectorAll("[data-copy]")) {
      button.addEventListener("click", async () => {
        const input = document.getElementById(button.getAttribute("data-copy"));
        const status = document.getElementById("copy-status");
        let done = false;
        try {
          await navigator.clipboard.writeText(input.value);
          done = true;
        } catch (_) {
          input.select();
          try { done = document.execCommand("copy"); } catch (_) { done = false; }
        }
        button.textContent = done ? "Copied" : "Copy";
        button.classList.toggle("copied", done);
        if (status) {
          status.textContent = done ? "The key is on your clipboard." : "Press Ctrl+C (⌘C) to copy the selected key.";
        }
        if (!done) { input.focus(); input.select(); }
      });
    }
    for (const input of document.querySelectorAll("[data-copy-source]")) {
      input.addEventListener("focus", () => input.select());
    }
  }

  /** Ask before a destructive form is sent. */
  function initConfirm() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    }
  }

  initCopy();
  initConfirm();
  tickTimes();
  setInterval(tickTimes, 30e3);

  const root = document.getElementById("dash");
  if (!root || !root.dataset.deploymentsUrl) return;

  // ------------------------------------------------------------------ the dashboard

  const cfg = root.dataset;
  const githubBase = (cfg.githubUrl || "https://github.com").replace(/\/$/, "");
  const form = document.getElementById("filters");
  const $ = (id) => document.getElementById(id);
  // gen counts filter changes: an answer to an older filter is dropped and the refresh runs again at once.
  const state = { seen: null, timer: null, busy: false, again: false, gen: 0, sig: {} };

  /** The filters as they stand in the form. */
  function filters() {
    const data = new FormData(form);
    return {
      period: data.get("period") || "24h",
      environment: data.get("environment") || "",
      repository: data.get("repository") || "",
    };
  }

  /** A URL with the query parameters that are set. */
  function withQuery(url, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? `${url}?${s}` : url;
  }

  /** A non-2xx answer, with its status and Retry-After seconds. */
  class HttpError extends Error {
    constructor(status, retryAfter) {
      super("HTTP " + status);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  /** GET JSON from the read API with the session cookie. */
  async function getJSON(url) {
    const resp = await fetch(url, {
      credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
    });
    if (!resp.ok) throw new HttpError(resp.status, Number(resp.headers.get("Retry-After")) || 0);
    return resp.json();
  }

  /** Re-render a region only when its data changed (keeps focus and selection steady). */
  function changed(name, data) {
    const sig = JSON.stringify(data);
    if (state.sig[name] === sig) return false;
    state.sig[name] = sig;
    return true;
  }

  // ---- latest deployments

  /** The key of one environment of one repository (or service). */
  function envKey(owner, environment) { return `${owner}\u0000${environment}`; }

  /** A table cell with an explicit role: the small-screen layout restyles the table, the roles keep it one. */
  function cell(attrs, ...children) { return el("td", { role: "cell", ...attrs }, ...children); }

  function renderDeployments(items, kinds) {
    const body = $("deployments-body");
    const fresh = new Set();
    if (state.seen) for (const d of items) if (!state.seen.has(d.id)) fresh.add(d.id);
    state.seen = new Set(items.map((d) => d.id));
    if (!changed("deployments", items)) return fresh;
    if (!items.length) {
      body.replaceChildren(el("tr", { class: "empty", role: "row" },
        cell({ colspan: 6, text: "No deployments in this period." })));
      return fresh;
    }
    body.replaceChildren(...items.map((d) => {
      const repo = d.repository || d.service || "";
      const hints = { kind: kinds.get(envKey(repo, d.environment)), production: d.production, transient: d.transient };
      return el("tr", { class: fresh.has(d.id) ? "fresh" : null, "data-id": d.id, role: "row" },
        cell({}, envBadge(d.environment, hints)),
        cell({ class: "repo" }, el("span", { title: repo || null, class: repo ? null : "muted", text: repo || "—" })),
        cell({}, commitLink(githubBase, d.repository, d.sha, d.version)),
        cell({}, statusPill(d.status)),
        cell({}, deployerName(d.deployer) || el("span", { class: "muted", text: d.source || "—" })),
        cell({ class: "when" }, timeEl(d.deployed_at || d.created_at)));
    }));
    return fresh;
  }

  // ---- environments now

  function renderEnvironments(items, f) {
    const list = $("environments");
    const shown = items.filter((e) => e.state !== "destroyed"
      && (!f.environment || e.environment === f.environment) && (!f.repository || e.repository === f.repository));
    if (!changed("environments", shown)) return;
    if (!shown.length) {
      list.replaceChildren(el("li", { class: "muted", text: "No environment has a deployment yet." }));
      return;
    }
    list.replaceChildren(...shown.map((e) => el("li", { class: "env" },
      el("div", { class: "env-head" }, envBadge(e.environment, { kind: e.kind }),
        el("span", { class: "env-repo", title: e.repository || e.service, text: e.repository || e.service }),
        statusPill(e.status)),
      el("div", { class: "env-meta" },
        commitLink(githubBase, e.repository, e.sha, e.version),
        e.since ? el("span", { class: "muted" }, " · ", timeEl(e.since)) : null,
        deployerName(e.deployer) ? el("span", { class: "muted", text: " · by " + deployerName(e.deployer) }) : null,
        /^https?:\/\//.test(e.url || "")
          ? el("span", {}, " · ", el("a", { href: e.url, rel: "noopener noreferrer", text: "open" })) : null))));
  }

  // ---- gate decisions

  function renderDecisions(items) {
    const list = $("decisions");
    if (!changed("decisions", items)) return;
    if (!items.length) {
      list.replaceChildren(el("li", { class: "muted", text: "No gate decisions yet." }));
      return;
    }
    list.replaceChildren(...items.map((d) => el("li", { class: "decision" },
      el("div", { class: "decision-head" },
        el("span", { class: "verdict verdict-" + String(d.verdict || "").toLowerCase(), text: d.verdict || "?" }),
        envBadge(d.environment),
        el("span", { class: "repo", text: d.repository || "" }),
        commitLink(githubBase, d.repository, d.sha, null),
        el("span", { class: "muted decision-when" }, timeEl(d.created_at))),
      (d.reasons && d.reasons.length)
        ? el("ul", { class: "reasons" }, d.reasons.map((r) => el("li", { text: r })))
        : null)));
  }

  // ---- filter options

  /** Keep each select's options to the names the API knows (and the current choice). */
  function fillSelect(select, names, allLabel) {
    const current = select.value || select.dataset.selected || "";
    const values = [...new Set(names.filter(Boolean).concat(current ? [current] : []))].sort();
    if (!changed("opts-" + select.id, values)) return;
    select.replaceChildren(el("option", { value: "", text: allLabel }),
      ...values.map((v) => el("option", { value: v, selected: v === current, text: v })));
    select.value = current;
  }

  // ---- DORA figures

  const PERIOD_WORDS = {
    "1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days", "30d": "the last 30 days",
  };

  function setStat(id, value, note) {
    if ($(id).textContent !== value) $(id).textContent = value;
    if (note !== undefined && $(id + "-note").textContent !== note) $(id + "-note").textContent = note;
  }

  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

  function renderFigures(dora, f) {
    const words = PERIOD_WORDS[f.period];
    if (!dora) {
      for (const id of ["stat-count", "stat-frequency", "stat-lead", "stat-cfr", "stat-mttr"]) setStat(id, "–");
      return;
    }
    const freq = dora.deployment_frequency || {}, lead = dora.lead_time_for_changes || {};
    const cfr = dora.change_failure_rate || {}, mttr = dora.time_to_restore || {};
    const finished = cfr.deployments || 0;
    setStat("stat-count", String(finished), `finished in ${words} · ${freq.deployments || 0} succeeded`);
    const perDay = freq.per_day;
    let rate = "–";
    if (perDay !== null && perDay !== undefined) {
      rate = perDay >= 1 || perDay === 0 ? `${+perDay.toFixed(1)} / day` : `${+(perDay * 7).toFixed(1)} / week`;
    }
    setStat("stat-frequency", rate, `${plural(freq.deployments || 0, "successful deployment")}`);
    setStat("stat-lead", lead.count ? duration(lead.median_seconds) : "–", lead.count
      ? `median of ${plural(lead.count, "change")} · p90 ${duration(lead.p90_seconds)}` : "no new change went live");
    const failures = (cfr.failed || 0) + (cfr.rolled_back || 0);
    setStat("stat-cfr", cfr.rate === null || cfr.rate === undefined ? "–" : `${+(cfr.rate * 100).toFixed(1)} %`,
      finished ? `${failures} of ${finished} failed or rolled back` : "no finished deployment");
    const down = mttr.unrestored ? `${mttr.unrestored} still down` : "";
    setStat("stat-mttr", mttr.count ? duration(mttr.median_seconds) : "–", mttr.count
      ? `median of ${plural(mttr.count, "incident")}${down ? " · " + down : ""}` : (down || "no failure to restore"));
  }

  // ---- the chart: successful deployments per day, change failures stacked on top (inline SVG)

  function renderChart(series) {
    const fig = $("chart");
    if (!changed("chart", series)) return;
    if (!series || !series.length) {
      fig.replaceChildren(el("p", { class: "muted", text: "No figures for this period." }));
      fig.setAttribute("aria-label", "No chart data");
      return;
    }
    const W = 420, H = 170, left = 26, right = 6, top = 10, bottom = 22;
    const plotW = W - left - right, plotH = H - top - bottom;
    const totals = series.map((d) => (d.deployments || 0) + (d.change_failures || 0));
    const max = Math.max(1, ...totals);
    const step = plotW / series.length;
    const barW = Math.min(44, Math.max(2, step * 0.7));
    const y = (v) => top + plotH - (v / max) * plotH;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true", focusable: "false" });
    // Gridlines at the top value and half of it, labelled on the left.
    for (const v of [...new Set([max, Math.round(max / 2)])].filter((v) => v > 0)) {
      chart.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
    }
    chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }),
      svg("text", { x: left - 6, y: top + plotH + 4, "text-anchor": "end" }, "0"));
    const every = Math.ceil(series.length / 6);
    series.forEach((d, i) => {
      const x = left + i * step + (step - barW) / 2;
      const ok = d.deployments || 0, bad = d.change_failures || 0;
      const g = svg("g", {});
      g.append(svg("title", {}, `${d.date}: ${plural(ok, "successful deployment")}, ${plural(bad, "change failure")}`));
      const rx = Math.min(3, barW / 3);
      if (ok) g.append(svg("rect", { class: "bar-ok", x, width: barW, y: y(ok), height: y(0) - y(ok), rx }));
      if (bad) {
        g.append(svg("rect", { class: "bar-fail", x, width: barW, y: y(ok + bad), height: y(ok) - y(ok + bad), rx }));
      }
      g.append(svg("rect", { class: "bar-hit", x: left + i * step, width: step, y: top, height: plotH }));
      chart.append(g);
      if (i % every === 0 || series.length <= 7) {
        const label = new Date(d.date + "T00:00:00Z")
          .toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
        chart.append(svg("text", { x: left + i * step + step / 2, y: H - 6, "text-anchor": "middle" }, label));
      }
    });
    const total = series.reduce((n, d) => n + (d.deployments || 0), 0);
    const fails = series.reduce((n, d) => n + (d.change_failures || 0), 0);
    fig.setAttribute("aria-label", `Deployments per day from ${series[0].date} to ${series[series.length - 1].date}: `
      + `${plural(total, "successful deployment")} and ${plural(fails, "change failure")} in all, `
      + `at most ${max} on one day.`);
    fig.replaceChildren(chart);
  }

  function renderDora(dora, f) {
    renderFigures(dora, f);
    renderChart(dora ? dora.series : null);
  }

  // ------------------------------------------------------------------ the refresh loop

  function setLive(text, tone) {
    $("live-text").textContent = text;
    $("live").className = "live" + (tone ? " live-" + tone : "");
  }

  function announce(text) {
    const a = $("announce");
    a.textContent = "";
    if (text) setTimeout(() => { a.textContent = text; }, 50);
  }

  /** Put one round of answers on the page. */
  function show(f, deps, envs, decisions, dora) {
    const kinds = new Map(envs.items.map((e) => [envKey(e.repository || e.service, e.environment), e.kind]));
    const fresh = renderDeployments(deps.items, kinds);
    renderEnvironments(envs.items, f);
    renderDecisions(decisions.items);
    renderDora(dora, f);
    const names = (field) => envs.items.map((e) => e[field]).concat(deps.items.map((d) => d[field]));
    fillSelect($("filter-environment"), names("environment"), "All environments");
    fillSelect($("filter-repository"), names("repository"), "All repositories");
    if (fresh.size) announce(fresh.size === 1 ? "1 new deployment" : `${fresh.size} new deployments`);
    const now = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    setLive("Live · updated " + now, "ok");
  }

  async function refresh() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    state.again = false;
    clearTimeout(state.timer);
    const gen = state.gen;
    let wait = Number(cfg.refreshMs) || 5000;
    const f = filters();
    const scope = { environment: f.environment, repository: f.repository };
    try {
      const answers = await Promise.all([
        getJSON(withQuery(cfg.deploymentsUrl, { limit: 20, period: f.period, ...scope })),
        getJSON(withQuery(cfg.environmentsUrl, { limit: 100, state: "active" })),
        getJSON(withQuery(cfg.decisionsUrl, { limit: 8, ...scope })),
        getJSON(withQuery(cfg.doraUrl, { period: f.period, ...scope })).catch((e) => {
          if (e.status === 401) throw e;
          return null; // the figures are a bonus: the list still refreshes without them
        }),
      ]);
      if (gen === state.gen) show(f, ...answers); // else the filters changed meanwhile: run again below
    } catch (e) {
      if (e.status === 401) {
        window.location.assign(cfg.loginUrl); // the session ended (signed out, or the key was revoked)
        return;
      }
      if (e.status === 429) {
        wait = Math.max(wait, (e.retryAfter || 10) * 1000);
        setLive("Rate limited · retrying in " + Math.round(wait / 1000) + " s", "warn");
      } else {
        setLive(e.status ? `Server answered ${e.status} · retrying` : "Offline · retrying", "warn");
      }
    } finally {
      state.busy = false;
    }
    tickTimes();
    if (state.again || gen !== state.gen) refresh();
    else if (!document.hidden) state.timer = setTimeout(refresh, wait);
  }

  /** Filters apply at once: the URL keeps them (shareable, survives a reload), the data refreshes. */
  form.addEventListener("change", () => {
    const f = filters();
    history.replaceState(null, "", withQuery(window.location.pathname, f.period === "24h" ? { ...f, period: "" } : f));
    state.seen = null;
    state.sig = {};
    state.gen += 1;
    refresh();
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });

  // A hidden tab does not poll; it catches up as soon as it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(state.timer);
    else refresh();
  });

  refresh();
})();
