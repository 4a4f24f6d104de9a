// casetrail's dashboard: plain JavaScript over the v1 API, no library and nothing fetched from elsewhere.
// Every number shown comes from /v1/indicators (or its series) as the API answers it; this file only lays it out.
"use strict";

const TEXT = {
  vi: {
    title: "casetrail — chỉ số hồ sơ trực tuyến và bưu chính", tab_overview: "Tổng quan", tab_trends: "Xu hướng",
    tab_catalogue: "Danh mục thủ tục", tab_audit: "Kiểm tra hồ sơ", token: "Mã truy cập", period: "Kỳ",
    known_on: "Như đã biết vào ngày", below_only: "Chỉ đơn vị chưa đạt", csv: "Tải CSV", xlsx: "Tải XLSX",
    agency: "Đơn vị", name: "Đơn vị", code: "Mã", received: "Tiếp nhận", online: "Trực tuyến",
    online_rate: "Tỷ lệ trực tuyến", postal: "Bưu chính", postal_rate: "Tỷ lệ bưu chính", target: "Chỉ tiêu",
    online_target: "Chỉ tiêu TT", online_met: "Đạt (TT)", postal_target: "Chỉ tiêu BC", postal_met: "Đạt (BC)",
    met: "Đạt", not_met: "Chưa đạt", legend_agency: "Đơn vị đã chọn", legend_target: "Chỉ tiêu tỉnh", none: "—", known: "đã biết", chart_online: "Tỷ lệ hồ sơ trực tuyến theo quý",
    chart_postal: "Tỷ lệ hồ sơ qua bưu chính theo quý", province: "Toàn tỉnh", dossier: "Mã hồ sơ",
    look_up: "Tra cứu", download_bundle: "Tải gói kiểm tra", procedure: "Thủ tục", online_level: "Mức trực tuyến",
    postal_receive: "Nhận qua bưu chính", postal_return: "Trả qua bưu chính", yes: "Có", no: "Không",
    needs_auditor: "Cần mã truy cập của kiểm tra viên (auditor) hoặc quản trị (admin).",
    needs_token: "Các bảng này cần mã truy cập: nhập vào ô «Mã truy cập».",
    not_found: "Không có hồ sơ này.", below: "đơn vị chưa đạt chỉ tiêu trực tuyến hoặc bưu chính",
    of: "trên", stamp: "Vị trí nhật ký", computed: "tính lúc", version: "phiên bản", position: "vị trí",
    recorded: "ghi nhận", by: "bởi", no_data: "Không có số liệu.",
  },
  en: {
    title: "casetrail — online and postal dossier indicators", tab_overview: "Overview", tab_trends: "Trends",
    tab_catalogue: "Catalogue", tab_audit: "Audit a dossier", token: "Token", period: "Period",
    known_on: "As known on", below_only: "Only agencies below target", csv: "Download CSV",
    xlsx: "Download XLSX", agency: "Agency", name: "Agency", code: "Code", received: "Received", online: "Online",
    online_rate: "Online rate", postal: "Postal", postal_rate: "Postal rate", target: "Target", met: "Met",
    online_target: "Online target", online_met: "Online met", postal_target: "Postal target", postal_met: "Postal met",
    legend_agency: "Chosen agency", legend_target: "Province target",
    not_met: "Not met", none: "—", known: "as known", chart_online: "Online rate by quarter",
    chart_postal: "Postal rate by quarter", province: "Province", dossier: "Dossier code", look_up: "Look up",
    download_bundle: "Download audit bundle", procedure: "Procedure", online_level: "Online level",
    postal_receive: "Postal receipt", postal_return: "Postal return", yes: "Yes", no: "No",
    needs_auditor: "An auditor or admin token is needed.", not_found: "No such dossier.",
    needs_token: "These tables need a token: type it in the Token field.",
    below: "agencies below their online or postal target", of: "of", stamp: "Log position",
    computed: "computed", version: "version", position: "position", recorded: "recorded", by: "by",
    no_data: "No figures.",
  },
};

const state = {
  lang: localStorage.getItem("casetrail.lang") || "vi",
  token: sessionStorage.getItem("casetrail.token") || "",
  period: null,
  knownAt: "",
  belowOnly: false,
  path: [],          // drill-down: agency codes from the province down
  sort: { key: null, up: true },
  agencies: [],      // the catalogue's agencies
  rows: [],
  known: new Map(),
  trail: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[state.lang][key] ?? key;
const pct = (r) => (r === null || r === undefined ? t("none") : (100 * r).toFixed(2) + " %");

async function api(path, { blob = false } = {}) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    const error = new Error(problem.detail || response.statusText);
    error.status = response.status;
    throw error;
  }
  return blob ? response.blob() : response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function translate() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  $("lang").textContent = state.lang === "vi" ? "English" : "Tiếng Việt";
  document.title = t("title");
}

function province() {
  return state.agencies.find((a) => a.level === "province" && !a.parent);
}

function nameOf(code) {
  return state.agencies.find((a) => a.agency === code)?.name ?? code;
}

// ---------------------------------------------------------------- overview

function indicatorQuery(extra = "") {
  const root = state.path[state.path.length - 1];
  const agency = root ? `&agency=${encodeURIComponent(root)}` : "";
  return `period=${state.period}&group=subtree${agency}&lang=${state.lang}${extra}`;
}

async function loadOverview() {
  if (!state.period) return;
  const answer = await api(`/v1/indicators?${indicatorQuery()}`);
  state.rows = answer.rows;
  $("stamp").textContent = `${t("stamp")} ${answer.stamp.position} · root ${answer.stamp.root} · ${t("computed")} ${answer.stamp.computed_at}`;
  state.known = new Map();
  if (state.knownAt) {
    const then = await api(`/v1/indicators?${indicatorQuery(`&known_at=${state.knownAt}`)}`);
    for (const r of then.rows) state.known.set(r.agency, r);
  }
  $("csv").href = `/v1/indicators?${indicatorQuery("&format=csv")}`;
  $("xlsx").href = `/v1/indicators?${indicatorQuery("&format=xlsx")}`;
  renderOverview();
}

const COLUMNS = [
  { key: "name", label: "name", text: true, value: (r) => r.name },
  { key: "agency", label: "code", text: true, narrow: true, value: (r) => r.agency },
  { key: "received", label: "received", value: (r) => r.received },
  { key: "received_online", label: "online", value: (r) => r.received_online },
  { key: "online_rate", label: "online_rate", value: (r) => r.online_rate, show: pct, known: true },
  { key: "online_target", label: "online_target", narrow: true, value: (r) => r.online_target, show: pct },
  { key: "online_met", label: "online_met", value: (r) => r.online_met, show: verdict },
  { key: "postal_dossiers", label: "postal", value: (r) => r.postal_dossiers },
  { key: "postal_rate", label: "postal_rate", value: (r) => r.postal_rate, show: pct, known: true },
  { key: "postal_target", label: "postal_target", narrow: true, value: (r) => r.postal_target, show: pct },
  { key: "postal_met", label: "postal_met", value: (r) => r.postal_met, show: verdict },
];

function verdict(v) {
  return v === null || v === undefined ? t("none") : v ? t("met") : t("not_met");
}

function below(r) {
  return r.online_met === false || r.postal_met === false;
}

function renderOverview() {
  const root = state.path[state.path.length - 1] ?? province()?.agency;
  const total = state.rows.find((r) => r.agency === root) ?? state.rows.find((r) => r.level === "province");
  let children = state.rows.filter((r) => r !== total && (r.parent === root || (!root && r.level !== "province")));
  if (state.belowOnly) children = children.filter(below);
  if (state.sort.key) {
    const column = COLUMNS.find((c) => c.key === state.sort.key);
    children.sort((a, b) => {
      const x = column.value(a), y = column.value(b);
      const order = typeof x === "string" ? String(x).localeCompare(String(y), "vi") : (x ?? -1) - (y ?? -1);
      return state.sort.up ? order : -order;
    });
  }
  const head = $("table").tHead;
  head.replaceChildren(el("tr", {}, ...COLUMNS.flatMap((c) => {
    const cells = [el("th", { class: (c.text ? "text " : "") + (c.narrow ? "hide-narrow" : ""), "data-key": c.key,
      onclick: () => sortBy(c.key) }, t(c.label) + (state.sort.key === c.key ? (state.sort.up ? " ▲" : " ▼") : ""))];
    if (c.known && state.knownAt) cells.push(el("th", { class: "known" }, `${t(c.label)} (${t("known")} ${state.knownAt})`));
    return cells;
  })));
  const body = $("table").tBodies[0];
  body.replaceChildren(...[total, ...children].filter(Boolean).map((r) => row(r, r === total)));
  const belowCount = children.filter(below).length;
  $("summary").textContent = total
    ? `${total.name}: ${total.received_online} ${t("of")} ${total.received} ${t("online").toLowerCase()} (${pct(total.online_rate)}), ${total.postal_dossiers} ${t("postal").toLowerCase()} (${pct(total.postal_rate)}); ${belowCount} ${t("below")}.`
    : t("no_data");
  renderCrumbs();
  done("rendered");
}

// Counts each finished rendering on <body>, so that a reader (a person's script, or the browser tests) can tell
// that what it sees is the answer to what it asked.
function done(what) {
  document.body.dataset[what] = String(Number(document.body.dataset[what] || 0) + 1);
}

function row(r, isTotal) {
  const tr = el("tr", { "data-agency": r.agency ?? "", class: (isTotal ? "total " : "") + (below(r) ? "below" : "") });
  for (const c of COLUMNS) {
    const value = c.value(r);
    const shown = c.show ? c.show(value) : value ?? t("none");
    const classes = [c.text ? "text" : "", c.narrow ? "hide-narrow" : "", value === true ? "met" : value === false ? "not-met" : ""];
    const drillable = c.key === "name" && !isTotal && r.agencies > 1;
    if (drillable) classes.push("drill");
    const td = el("td", { class: classes.join(" "), "data-key": c.key, "data-value": JSON.stringify(value ?? null) }, shown);
    if (drillable) td.addEventListener("click", () => drill(r.agency));
    if (isTotal && c.key === "name") td.style.fontWeight = "700";
    tr.append(td);
    if (c.known && state.knownAt) {
      const then = state.known.get(r.agency);
      tr.append(el("td", { class: "known", "data-key": c.key + "_known", "data-value": JSON.stringify(then ? c.value(then) ?? null : null) }, then ? pct(c.value(then)) : t("none")));
    }
  }
  return tr;
}

function renderCrumbs() {
  const crumbs = $("crumbs");
  const top = province();
  const trail = [top?.agency, ...state.path].filter((c, i, all) => c && all.indexOf(c) === i);
  crumbs.replaceChildren(...trail.flatMap((code, i) => {
    const link = el("a", { "data-agency": code, onclick: () => { state.path = state.path.slice(0, Math.max(0, state.path.indexOf(code) + 1)); if (code === top?.agency) state.path = []; loadOverview().catch(show); } }, nameOf(code));
    return i === 0 ? [link] : [" › ", link];
  }));
}

function drill(code) {
  state.path.push(code);
  loadOverview().catch(show);
}

function sortBy(key) {
  state.sort = { key, up: state.sort.key === key ? !state.sort.up : false };
  renderOverview();
}

// ---------------------------------------------------------------- trends

async function loadTrends() {
  const select = $("trend-agency");
  if (!select.options.length) {
    select.append(el("option", { value: "" }, t("province")));
    for (const a of state.agencies.filter((a) => a.level !== "province")) select.append(el("option", { value: a.agency }, a.name));
  }
  const periods = [...$("period").options].map((o) => o.value).filter((p) => /Q/.test(p)).sort();
  if (!periods.length) return;
  const range = `from=${periods[0]}&to=${periods[periods.length - 1]}`;
  const whole = await api(`/v1/indicators/series?${range}&group=province`);
  const lines = [{ name: "province", points: whole.periods.map((p) => [p.period, p.rows[0]]) }];
  if (select.value) {
    const one = await api(`/v1/indicators/series?${range}&group=subtree&agency=${encodeURIComponent(select.value)}`);
    lines.push({ name: "agency", points: one.periods.map((p) => [p.period, p.rows.find((r) => r.agency === select.value)]) });
  }
  chart($("chart-online"), lines, "online_rate", "online_target");
  chart($("chart-postal"), lines, "postal_rate", "postal_target");
  done("charted");
}

function chart(svg, lines, key, targetKey) {
  const W = 640, H = 260, L = 44, R = 36, T = 24, B = 40;
  const periods = lines[0].points.map((p) => p[0]);
  const values = lines.flatMap((l) => l.points.map((p) => p[1]?.[key] ?? 0));
  const target = lines[0].points.find((p) => p[1]?.[targetKey] != null)?.[1][targetKey] ?? 0;
  const top = Math.max(0.05, target * 1.25, ...values);
  const x = (i) => L + (periods.length < 2 ? 0 : (i * (W - L - R)) / (periods.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
  svg.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(make("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee" }));
    const label = make("text", { x: 4, y: y(v) + 4 }); label.textContent = (100 * v).toFixed(0) + "%"; svg.append(label);
  }
  periods.forEach((p, i) => {
    if (periods.length > 12 && i % 2) return;
    const label = make("text", { x: x(i) - 16, y: H - 14 }); label.textContent = p; svg.append(label);
  });
  svg.append(make("line", { class: "target", x1: L, x2: W - R, y1: y(target), y2: y(target) }));
  const legend = [["#2457a6", t("province")], ...(lines.length > 1 ? [["#e08a00", t("legend_agency")]] : []), ["#b3261e", t("legend_target")]];
  legend.forEach(([colour, label], i) => {
    svg.append(make("rect", { x: L + i * 150, y: 6, width: 10, height: 10, fill: colour }));
    const text = make("text", { x: L + i * 150 + 14, y: 15 }); text.textContent = label; svg.append(text);
  });
  for (const line of lines) {
    const d = line.points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[1]?.[key] ?? 0).toFixed(1)}`).join(" ");
    svg.append(make("path", { class: line.name, d, "data-points": line.points.length }));
    line.points.forEach((p, i) => {
      const dot = make("circle", { cx: x(i), cy: y(p[1]?.[key] ?? 0), r: 2.5, fill: line.name === "province" ? "#2457a6" : "#e08a00" });
      const tip = make("title", {}); tip.textContent = `${p[0]}: ${pct(p[1]?.[key])}`; dot.append(tip);
      svg.append(dot);
    });
  }
}

// ---------------------------------------------------------------- catalogue

async function loadCatalogue() {
  const catalogue = await api("/v1/catalogue");
  const levels = { level3: "3", level4: "4", partial: "3", full: "4", none: t("none") };
  const head = $("catalogue-table").tHead;
  head.replaceChildren(el("tr", {}, ...["agency", "procedure", "online_level", "postal_receive", "postal_return"].map((k) => el("th", { class: "text" }, t(k)))));
  const yes = (b) => (b ? t("yes") : t("no"));
  const rows = catalogue.agencies.flatMap((a) => a.procedures.map((p) =>
    el("tr", { "data-agency": a.agency, "data-procedure": p.procedure },
      el("td", { class: "text" }, a.name), el("td", { class: "text" }, `${p.procedure} ${p.name}`),
      el("td", { class: "text" }, levels[p.online_level] ?? p.online_level), el("td", { class: "text" }, yes(p.postal_receive)),
      el("td", { class: "text" }, yes(p.postal_return)))));
  $("catalogue-table").tBodies[0].replaceChildren(...rows);
  done("catalogued");
}

// ---------------------------------------------------------------- audit

async function lookUp(event) {
  event.preventDefault();
  const code = $("dossier").value.trim();
  $("audit-message").textContent = "";
  $("audit-message").className = "";
  $("timeline").replaceChildren();
  $("trail-head").hidden = true;
  try {
    const trail = await api(`/v1/dossiers/${encodeURIComponent(code)}/events`);
    state.trail = code;
    $("trail-title").textContent = code;
    $("trail-head").hidden = false;
    $("timeline").replaceChildren(...trail.events.map((e) => el("li", { "data-position": e.position },
      el("strong", {}, e.type), " ",
      el("span", { class: "when" }, `${e.occurred_at} · ${t("version")} ${e.version} · ${t("position")} ${e.position} · ${t("recorded")} ${e.recorded_at} ${t("by")} ${e.source}`),
      el("br"), el("code", {}, JSON.stringify(e.data)))));
  } catch (error) {
    $("audit-message").className = "error";
    $("audit-message").textContent = error.status === 404 ? t("not_found") : error.status === 401 || error.status === 403 ? t("needs_auditor") : error.message;
  }
  done("looked");
}

// A download through the API with the token (a plain link carries none, so with public tables off it would be
// refused); the file is named as the server names it.
async function download(event) {
  if (!state.token) return; // the plain link works while the tables are public
  event.preventDefault();
  const href = event.currentTarget.href;
  try {
    const response = await fetch(href, { headers: { Authorization: "Bearer " + state.token } });
    if (!response.ok) throw Object.assign(new Error(response.statusText), { status: response.status });
    const blob = await response.blob();
    const name = /filename="?([^";]+)/.exec(response.headers.get("content-disposition") || "")?.[1]
      || (href.includes("format=xlsx") ? "indicators.xlsx" : "indicators.csv");
    const link = el("a", { href: URL.createObjectURL(blob), download: name });
    document.body.append(link);
    link.click();
    link.remove();
    document.body.dataset.downloadedBytes = String(blob.size);
  } catch (error) {
    show(error);
  }
}

async function downloadBundle() {
  try {
    const blob = await api(`/v1/dossiers/${encodeURIComponent(state.trail)}/bundle`, { blob: true });
    const link = el("a", { href: URL.createObjectURL(blob), download: `${state.trail}.bundle.json` });
    document.body.append(link);
    link.click();
    link.remove();
    document.body.dataset.bundleBytes = String(blob.size);
  } catch (error) {
    $("audit-message").className = "error";
    $("audit-message").textContent = error.status === 401 || error.status === 403 ? t("needs_auditor") : error.message;
  }
}

// ---------------------------------------------------------------- start

function show(error) {
  $("summary").textContent = error.status === 401 || error.status === 403 ? t("needs_token") : error.message;
}

function switchView(view) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll("main .view")) s.hidden = s.id !== view;
  const load = { overview: loadOverview, trends: loadTrends, catalogue: loadCatalogue }[view];
  if (load) load().catch(show);
}

async function start() {
  translate();
  $("token").value = state.token;
  const catalogue = await api("/v1/catalogue");
  state.agencies = catalogue.agencies;
  // The periods offered: every quarter from 2015 to this one that has dossiers, the latest chosen.
  const now = new Date();
  const thisQuarter = `${now.getFullYear()}-Q${Math.floor(now.getMonth() / 3) + 1}`;
  const series = await api(`/v1/indicators/series?from=2015-Q1&to=${thisQuarter}&group=province`);
  const withData = series.periods.filter((p) => p.rows[0]?.received > 0).map((p) => p.period);
  const select = $("period");
  select.replaceChildren(...withData.map((p) => el("option", { value: p }, p)));
  state.period = new URLSearchParams(location.search).get("period") || withData[withData.length - 1] || thisQuarter;
  if (!withData.includes(state.period)) select.append(el("option", { value: state.period }, state.period));
  select.value = state.period;
  await loadOverview();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => switchView(b.dataset.view));
  $("period").addEventListener("change", (e) => { state.period = e.target.value; loadOverview().catch(show); });
  $("known-at").addEventListener("change", (e) => { state.knownAt = e.target.value; loadOverview().catch(show); });
  $("below-only").addEventListener("change", (e) => { state.belowOnly = e.target.checked; renderOverview(); });
  $("trend-agency").addEventListener("change", () => loadTrends().catch(show));
  $("lookup").addEventListener("submit", lookUp);
  $("bundle").addEventListener("click", downloadBundle);
  $("csv").addEventListener("click", download);
  $("xlsx").addEventListener("click", download);
  $("token").addEventListener("change", (e) => {
    state.token = e.target.value.trim();
    sessionStorage.setItem("casetrail.token", state.token);
    // With public tables off, nothing could load before a token was given: start again now.
    if (document.body.dataset.ready !== "true") start().then(() => document.body.dataset.ready = "true").catch(show);
  });
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "vi" ? "en" : "vi";
    localStorage.setItem("casetrail.lang", state.lang);
    translate();
    const active = document.querySelector("#tabs button.active").dataset.view;
    switchView(active);
  });
  start().then(() => document.body.dataset.ready = "true").catch(show);
});
