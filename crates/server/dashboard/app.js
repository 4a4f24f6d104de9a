// casetrail's dashboard: plain JavaScript over the v1 API, nothing fetched from elsewhere. The one library, uPlot
// (MIT, vendor/uPlot.LICENSE), draws the trend charts and is served from this binary too.
// Every number shown comes from /v1/indicators (or its series) as the API answers it; this file only lays it out.
// Every view has an address that reproduces it: view, period, drill-down path, profile, "as known on", trend agency.
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
    profile: "Cách tính", form: "Tải biểu mẫu (XLSX)", link: "Liên kết tới bảng này", tab_check: "Kiểm tra bảng công bố",
    check_file: "Bảng đã công bố (CSV)", check_period: "Kỳ (để đối chiếu với nhật ký)", check: "Kiểm tra",
    check_row: "Dòng", check_sums: "Cộng", check_rates: "Tỷ lệ in", check_log: "Đối chiếu nhật ký",
    adds_up: "khớp", not_adding: "KHÔNG KHỚP", reproduced: "đúng", slip: "SAI", should_be: "đúng ra là",
    unchecked: "không kiểm tra được", counts_equal: "khớp số liệu", counts_differ: "KHÁC", casetrail_has: "casetrail có",
    check_summary: "dòng; tổng không khớp", slips: "tỷ lệ in sai", differing: "số liệu khác nhật ký",
    consistent: "cách tính phù hợp nhất", source: "Nguồn", on_time_rate: "Tỷ lệ đúng hạn",
    not_read: "Cột không đọc", compared_under: "Đối chiếu nhật ký theo cách tính",
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
    profile: "Profile", form: "Download the form (XLSX)", link: "Link to this table", tab_check: "Check a published table",
    check_file: "Published table (CSV)", check_period: "Period (to compare with the log)", check: "Check",
    check_row: "Line", check_sums: "Sums", check_rates: "Printed rates", check_log: "Against the log",
    adds_up: "adds up", not_adding: "DOES NOT ADD UP", reproduced: "reproduced", slip: "A SLIP", should_be: "should be",
    unchecked: "not checked", counts_equal: "counts equal", counts_differ: "DIFFERENT", casetrail_has: "casetrail has",
    check_summary: "rows; sums not adding up", slips: "slips", differing: "counts differing from the log",
    consistent: "most consistent profile", source: "Source", on_time_rate: "On-time rate",
    not_read: "Column not read", compared_under: "Counts compared with the log under",
  },
};

const state = {
  lang: localStorage.getItem("casetrail.lang") || "vi",
  token: sessionStorage.getItem("casetrail.token") || "",
  view: "overview",
  period: null,
  profile: "",       // the report profile's id; "" until the profiles are known
  profiles: [],
  defaultProfile: "",
  trendAgency: "",
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
// A rate as the profile prints it (the API's `printed`: its rounding, its decimals).
const printed = (r, key) => (r?.printed?.[key] == null ? t("none") : r.printed[key] + " %");

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

function indicatorQuery(extra = "", group = "subtree") {
  const root = state.path[state.path.length - 1];
  const agency = root ? `&agency=${encodeURIComponent(root)}` : "";
  const profile = state.profile ? `&profile=${encodeURIComponent(state.profile)}` : "";
  return `period=${state.period}${group ? "&group=" + group : ""}${agency}&lang=${state.lang}${profile}${extra}`;
}

// ---------------------------------------------------------------- the address of a view

function address() {
  const q = new URLSearchParams();
  q.set("view", state.view);
  if (state.period) q.set("period", state.period);
  if (state.path.length) q.set("path", state.path.join(","));
  if (state.profile && state.profile !== state.defaultProfile) q.set("profile", state.profile);
  if (state.knownAt) q.set("known_at", state.knownAt);
  if (state.trendAgency) q.set("agency", state.trendAgency);
  return `${location.pathname}?${q}`;
}

function remember() {
  history.replaceState(null, "", address());
  $("permalink").href = location.href;
}

function recall() {
  const q = new URLSearchParams(location.search);
  state.view = ["overview", "trends", "catalogue", "audit", "check"].includes(q.get("view")) ? q.get("view") : "overview";
  state.path = (q.get("path") || "").split(",").filter(Boolean);
  state.profile = q.get("profile") || "";
  state.knownAt = q.get("known_at") || "";
  state.trendAgency = q.get("agency") || "";
  return q.get("period");
}

function describeProfile() {
  const p = state.profiles.find((p) => p.id === state.profile);
  $("profile-note").textContent = p ? `${state.lang === "vi" ? p.title_vi : p.title_en} — ${t("source")}: ${p.source}` : "";
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
  const known = state.knownAt ? `&known_at=${state.knownAt}` : "";
  $("csv").href = `/v1/indicators?${indicatorQuery("&format=csv")}`;
  $("xlsx").href = `/v1/indicators?${indicatorQuery("&format=xlsx")}`;
  $("form").href = `/v1/indicators/form?${indicatorQuery("&format=xlsx" + known, "")}`;
  $("stamp").textContent += ` · ${t("profile")} ${answer.stamp.settings.profile.id} · cut ${answer.stamp.settings.cut}`;
  describeProfile();
  remember();
  renderOverview();
}

const COLUMNS = [
  { key: "name", label: "name", text: true, value: (r) => r.name },
  { key: "agency", label: "code", text: true, narrow: true, value: (r) => r.agency },
  { key: "received", label: "received", value: (r) => r.received },
  { key: "received_online", label: "online", value: (r) => r.received_online },
  { key: "online_rate", label: "online_rate", value: (r) => r.online_rate, show: (v, r) => printed(r, "online_rate"), known: true },
  { key: "online_target", label: "online_target", narrow: true, value: (r) => r.online_target, show: pct },
  { key: "online_met", label: "online_met", value: (r) => r.online_met, show: verdict },
  { key: "postal_dossiers", label: "postal", value: (r) => r.postal_dossiers },
  { key: "postal_rate", label: "postal_rate", value: (r) => r.postal_rate, show: (v, r) => printed(r, "postal_rate"), known: true },
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
    ? `${total.name}: ${total.received} ${t("received").toLowerCase()}, ${total.received_online} ${t("online").toLowerCase()} (${printed(total, "online_rate")}), ${total.postal_dossiers} ${t("postal").toLowerCase()} (${printed(total, "postal_rate")}); ${belowCount} ${t("below")}.`
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
    const shown = c.show ? c.show(value, r) : value ?? t("none");
    const classes = [c.text ? "text" : "", c.narrow ? "hide-narrow" : "", value === true ? "met" : value === false ? "not-met" : ""];
    const drillable = c.key === "name" && !isTotal && r.agencies > 1;
    if (drillable) classes.push("drill");
    const td = el("td", { class: classes.join(" "), "data-key": c.key, "data-value": JSON.stringify(value ?? null) }, shown);
    if (drillable) td.addEventListener("click", () => drill(r.agency));
    if (isTotal && c.key === "name") td.style.fontWeight = "700";
    tr.append(td);
    if (c.known && state.knownAt) {
      const then = state.known.get(r.agency);
      tr.append(el("td", { class: "known", "data-key": c.key + "_known", "data-value": JSON.stringify(then ? c.value(then) ?? null : null) }, then ? printed(then, c.key) : t("none")));
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
    select.value = state.trendAgency;
  }
  select.options[0].textContent = t("province");
  state.trendAgency = select.value;
  remember();
  const periods = [...$("period").options].map((o) => o.value).filter((p) => /Q/.test(p)).sort();
  if (!periods.length) return;
  const profile = state.profile ? `&profile=${encodeURIComponent(state.profile)}` : "";
  const range = `from=${periods[0]}&to=${periods[periods.length - 1]}${profile}`;
  const whole = await api(`/v1/indicators/series?${range}&group=province`);
  const lines = [{ name: "province", label: t("province"), colour: "#2457a6", points: whole.periods.map((p) => [p.period, p.rows[0]]) }];
  if (select.value) {
    const one = await api(`/v1/indicators/series?${range}&group=subtree&agency=${encodeURIComponent(select.value)}`);
    lines.push({ name: "agency", label: nameOf(select.value), colour: "#e08a00", points: one.periods.map((p) => [p.period, p.rows.find((r) => r.agency === select.value)]) });
  }
  chart("chart-online", lines, "online_rate", "online_target");
  chart("chart-postal", lines, "postal_rate", "postal_target");
  done("charted");
}

// The trend charts, drawn by uPlot: one point per quarter and series, round ticks on the rate axis, the target as
// a labelled dashed line, and the values of the quarter under the cursor in the legend. The charts are kept on
// `window.casetrailCharts` (by element id) for scripts and the browser tests.
const charts = (window.casetrailCharts = {});

function chart(id, lines, key, targetKey) {
  const holder = $(id);
  charts[id]?.destroy();
  holder.replaceChildren();
  const periods = lines[0].points.map((p) => p[0]);
  const percent = (r) => (r?.[key] == null ? null : 100 * r[key]);
  const data = [periods.map((_, i) => i), ...lines.map((l) => l.points.map((p) => percent(p[1])))];
  const target = 100 * (lines[0].points.find((p) => p[1]?.[targetKey] != null)?.[1][targetKey] ?? 0);
  const top = Math.max(5, target * 1.25, ...data.slice(1).flat().filter((v) => v != null));
  const label = `${t("target")} ${+target.toFixed(2)} %`;
  const opts = {
    width: Math.max(280, Math.min(holder.clientWidth || 640, 900)),
    height: 280,
    scales: { x: { time: false }, y: { range: () => [0, top] } },
    axes: [
      { values: (u, splits) => splits.map((i) => periods[i] ?? ""), incrs: [1, 2, 4, 8], space: 56 },
      { values: (u, ticks) => ticks.map((v) => `${+v.toFixed(2)} %`), size: 60 },
    ],
    series: [
      { label: t("period"), value: (u, i) => periods[i] ?? "" },
      // The value of the quarter under the pointer, as the profile prints it (the API's `printed`).
      ...lines.map((l) => ({ label: l.label, stroke: l.colour, width: 2, points: { size: 6 },
        value: (u, v, s, i) => (i == null || v == null ? t("none") : printed(l.points[i]?.[1], key)) })),
    ],
    hooks: { draw: [(u) => drawTarget(u, target, label)] },
  };
  charts[id] = new uPlot(opts, data, holder);
  holder.dataset.target = label;
  for (const l of lines) holder.dataset[l.name] = String(l.points.length);
  if (lines.length < 2) delete holder.dataset.agency;
}

function drawTarget(u, target, label) {
  const ctx = u.ctx, r = devicePixelRatio, y = u.valToPos(target, "y", true);
  const { left, width } = u.bbox;
  ctx.save();
  ctx.strokeStyle = ctx.fillStyle = "#b3261e";
  ctx.lineWidth = r;
  ctx.setLineDash([6 * r, 4 * r]);
  ctx.beginPath();
  ctx.moveTo(left, y);
  ctx.lineTo(left + width, y);
  ctx.stroke();
  ctx.font = `${12 * r}px system-ui, sans-serif`;
  ctx.textAlign = "right";
  ctx.fillText(label, left + width - 4 * r, y - 5 * r);
  ctx.restore();
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

// ---------------------------------------------------------------- check a published table

async function checkTable(event) {
  event.preventDefault();
  const file = $("check-file").files[0];
  $("check-result").replaceChildren();
  if (!file) return;
  const period = $("check-period").value.trim();
  const q = new URLSearchParams();
  if (period) q.set("period", period);
  if (state.profile && state.profile !== state.defaultProfile) q.set("profile", state.profile);
  const headers = { "Content-Type": "text/csv" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  try {
    // The file's bytes as they are: the server reads UTF-8 or Windows-1258 (a text() here would force UTF-8).
    const response = await fetch(`/v1/indicators/check?${q}`, { method: "POST", headers, body: file });
    const answer = await response.json();
    if (!response.ok) throw Object.assign(new Error(answer.detail || response.statusText), { status: response.status });
    renderCheck(answer);
  } catch (error) {
    $("check-result").replaceChildren(el("p", { class: "error" }, error.status === 401 || error.status === 403 ? t("needs_token") : error.message));
  }
  done("checked");
}

function renderCheck(report) {
  const reading = (r) => `${r.numerator} / ${r.denominator} ${r.definition}, ${r.rounding}${r.profiles.length ? " (" + r.profiles.join(", ") + ")" : ""}`;
  const rows = report.rows.map((row) => {
    const sums = row.sums.map((s) => el("div", { class: s.holds ? "met" : "not-met" }, `${s.rule}: ${s.left} / ${s.right} ${s.holds ? t("adds_up") : t("not_adding")}`));
    const rates = Object.entries(row.rates).map(([rate, v]) => {
      const name = t(rate) ?? rate;
      if (v.verdict === "reproduced") return el("div", { class: "met", "data-rate": rate, "data-verdict": "reproduced" }, `${name} ${v.printed} %: ${t("reproduced")} — ${v.readings.map(reading).join("; ")}`);
      if (v.verdict === "slip") return el("div", { class: "not-met", "data-rate": rate, "data-verdict": "slip", "data-correct": v.correct }, `${name} ${v.printed} %: ${t("slip")}, ${t("should_be")} ${v.correct} % — ${reading(v.under)}`);
      return el("div", { "data-rate": rate, "data-verdict": "unchecked" }, `${name} ${v.printed} %: ${t("unchecked")}`);
    });
    const matched = row.matched ? [el("div", { class: "when" }, row.matched)] : [];
    const log = row.against_log == null ? matched : row.against_log.every((c) => c.equal)
      ? [...matched, el("div", { class: "met" }, `${t("counts_equal")} (${row.against_log.length})`)]
      : [...matched, ...row.against_log.filter((c) => !c.equal).map((c) => el("div", { class: "not-met" }, `${c.quantity} ${c.published}: ${t("counts_differ")}, ${t("casetrail_has")} ${c.casetrail}`))];
    return el("tr", { "data-line": row.line }, el("td", {}, row.line), el("td", { class: "text" }, row.name),
      el("td", { class: "text" }, ...sums), el("td", { class: "text" }, ...rates), el("td", { class: "text" }, ...log));
  });
  const table = el("table", { id: "check-table" },
    el("thead", {}, el("tr", {}, ...["check_row", "name", "check_sums", "check_rates", "check_log"].map((k) => el("th", { class: "text" }, t(k))))),
    el("tbody", {}, ...rows));
  const summary = el("p", { id: "check-summary" }, `${report.rows.length} ${t("check_summary")} ${report.sums_failed}; ${t("slips")} ${report.slips}; ${t("differing")} ${report.counts_differing}; ${t("consistent")}: ${report.profile ?? t("none")}.`);
  const remarks = [...report.notes, ...report.unread_columns.map((c) => `${t("not_read")}: ${c}`)]
    .concat(report.compared_under ? [`${t("compared_under")}: ${report.compared_under}`] : [])
    .map((n) => el("li", {}, n));
  $("check-result").replaceChildren(summary, el("ul", { id: "check-notes", class: "stamp" }, ...remarks), el("div", { class: "scroll" }, table));
  state.checked = report;
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
      || (href.includes("/form?") ? "form.xlsx" : href.includes("format=xlsx") ? "indicators.xlsx" : "indicators.csv");
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
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll("main .view")) s.hidden = s.id !== view;
  if (view === "check" && !$("check-period").value) $("check-period").value = state.period ?? "";
  if (view === "check" && state.checked) renderCheck(state.checked); // again, in the language now chosen
  remember();
  const load = { overview: loadOverview, trends: loadTrends, catalogue: loadCatalogue }[view];
  if (load) return load().catch(show);
}

async function start() {
  translate();
  $("token").value = state.token;
  const asked = recall();
  const catalogue = await api("/v1/catalogue");
  state.agencies = catalogue.agencies;
  const profiles = await api("/v1/indicators/profiles");
  state.profiles = profiles.profiles;
  state.defaultProfile = profiles.default;
  if (!state.profiles.some((p) => p.id === state.profile)) state.profile = profiles.default;
  $("profile").replaceChildren(...state.profiles.map((p) => el("option", { value: p.id }, p.id)));
  $("profile").value = state.profile;
  $("known-at").value = state.knownAt;
  // The periods offered: every quarter from 2015 to this one that has dossiers, the latest chosen.
  const now = new Date();
  const thisQuarter = `${now.getFullYear()}-Q${Math.floor(now.getMonth() / 3) + 1}`;
  const series = await api(`/v1/indicators/series?from=2015-Q1&to=${thisQuarter}&group=province`);
  const withData = series.periods.filter((p) => p.rows[0]?.received > 0).map((p) => p.period);
  const select = $("period");
  select.replaceChildren(...withData.map((p) => el("option", { value: p }, p)));
  state.period = asked || withData[withData.length - 1] || thisQuarter;
  if (!withData.includes(state.period)) select.append(el("option", { value: state.period }, state.period));
  select.value = state.period;
  await switchView(state.view);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => switchView(b.dataset.view));
  $("period").addEventListener("change", (e) => { state.period = e.target.value; loadOverview().catch(show); });
  $("known-at").addEventListener("change", (e) => { state.knownAt = e.target.value; loadOverview().catch(show); });
  $("profile").addEventListener("change", (e) => {
    state.profile = e.target.value;
    const active = document.querySelector("#tabs button.active").dataset.view;
    switchView(active);
  });
  $("check-form").addEventListener("submit", checkTable);
  $("form").addEventListener("click", download);
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
