//! The dashboard in a real headless browser (Debian's Chromium, driven through ChromeDriver by `fantoccini`),
//! against the real server on a generated province: what the page shows is what `GET /v1/indicators` answers.

use super::{casetrail, http, Proc, BIN};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Installs Chromium and ChromeDriver once per test run when they are missing (scripts/install-browser).
fn browser_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/install-browser");
        let status = Command::new("bash")
            .arg(script)
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "scripts/install-browser failed: the browser tests need chromium and chromedriver"
        );
    });
}

/// A ChromeDriver child and a session of headless Chromium through it. Dropping it ends the driver, the browser and
/// every helper the browser started (`Proc`: its process group, then whatever carries its mark, such as the crash
/// handlers Chromium detaches into sessions of their own).
pub struct Browser {
    pub client: Client,
    pub driver: Proc,
    pub profile: tempfile::TempDir,
}

pub async fn browser(width: u32, height: u32) -> Browser {
    browser_installed();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let profile = tempfile::tempdir().unwrap();
    // Started in the profile's directory, so that the driver, the browser and its helpers all work there.
    let driver = Proc::spawn(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .current_dir(profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // The flags the machine notes ask for: no sandbox as root, and no background connections to the outside,
    // which this machine's closed network refuses.
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 format!("--user-data-dir={}", profile.path().display()), format!("--window-size={width},{height}")],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no browser session: {e}"),
        }
    };
    Browser {
        client,
        driver,
        profile,
    }
}

/// A server on a generated province (agencies, procedures, targets, dossiers over 2018–2019), with tokens.
pub struct Province {
    pub server: http::Server,
    pub period: String,
}

impl Province {
    pub fn start() -> Province {
        Province::start_with(&[])
    }

    pub fn start_with(serve: &[&str]) -> Province {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let generated = Command::new(BIN)
            .args(["generate", "--seed", "6", "--dossiers", "3000"])
            .output()
            .unwrap()
            .stdout;
        let file = dir.path().join("province.ndjson");
        std::fs::write(&file, generated).unwrap();
        let imported = casetrail(&data, &["import", file.to_str().unwrap()]);
        assert!(imported.status.success());
        let admin = http::token(&data, "admin", "admin", None);
        let analyst = http::token(&data, "analyst", "analyst", None);
        let auditor = http::token(&data, "auditor", "auditor", None);
        let (child, base) = http::spawn(&data, serve);
        Province {
            server: http::Server {
                child,
                base,
                admin: admin.clone(),
                ingest: admin,
                ingest_other: String::new(),
                analyst,
                auditor,
                dir,
            },
            period: "2019-Q4".into(),
        }
    }
}

/// Runs blocking work (the test server's blocking HTTP client) on a thread of its own, outside the async runtime
/// that drives the browser.
fn outside<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}

/// Saves a screenshot as `<CASETRAIL_SCREENSHOTS>/<name>.png` when that variable names a directory (how the
/// pictures in docs/screenshots were made); otherwise does nothing.
async fn snap(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("CASETRAIL_SCREENSHOTS") {
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// Waits until the number `document.body.dataset[what]` (a count of renderings, or a download's size) is past
/// `after`, and returns it.
async fn rendered(c: &Client, what: &str, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = c
            .execute(
                &format!("return Number(document.body.dataset.{what} || 0)"),
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0);
        if n > after {
            return n;
        }
        assert!(Instant::now() < deadline, "the page did not finish {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The overview table as the page shows it: for each row, the agency and every cell's value.
async fn table(c: &Client) -> Vec<Value> {
    let rows = c
        .execute(
            r#"return [...document.querySelectorAll('#table tbody tr')].map(tr => {
                 const cells = {};
                 for (const td of tr.querySelectorAll('td')) cells[td.dataset.key] = JSON.parse(td.dataset.value);
                 return { agency: tr.dataset.agency, cells, text: tr.textContent };
               })"#,
            vec![],
        )
        .await
        .unwrap();
    rows.as_array().unwrap().clone()
}

/// The same value, with JSON numbers compared as numbers (JavaScript writes 0 where Rust writes 0.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Checks that every row the page shows has the values the API gives for that agency.
fn same_numbers(shown: &[Value], answer: &Value, what: &str) {
    assert!(!shown.is_empty(), "{what}: no rows shown");
    for row in shown {
        let agency = row["agency"].as_str().unwrap();
        let api = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agency"].as_str() == Some(agency))
            .unwrap_or_else(|| panic!("{what}: {agency} is shown but not in the API's answer"));
        for key in [
            "received",
            "received_online",
            "online_rate",
            "online_met",
            "postal_dossiers",
            "postal_rate",
            "postal_met",
        ] {
            assert!(
                same(&row["cells"][key], &api[key]),
                "{what}: {agency} {key}: {} shown, {} answered",
                row["cells"][key],
                api[key]
            );
        }
    }
}

#[test]
fn the_dashboard_shows_what_the_api_answers() {
    let p = Province::start();
    let s = &p.server;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = browser(1280, 900).await;
        let c = &b.client;
        c.goto(&format!("{}/", s.base)).await.unwrap();
        let mut n = rendered(c, "rendered", 0).await;
        assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/");

        // The overview: the latest quarter with dossiers, the province's departments and districts.
        let period: String = c.execute("return document.getElementById('period').value", vec![]).await.unwrap().as_str().unwrap().into();
        assert_eq!(period, p.period);
        let (_, answer) = outside(|| s.get(&format!("/v1/indicators?period={period}&group=subtree&agency=000.00.00.H27"), None));
        let shown = table(c).await;
        same_numbers(&shown, &answer, "overview");
        assert_eq!(shown[0]["agency"], "000.00.00.H27", "the province's total comes first");
        let children = answer["rows"].as_array().unwrap().iter().filter(|r| r["parent"] == "000.00.00.H27").count();
        assert_eq!(shown.len(), children + 1, "every department and district, once");
        snap(c, "overview").await;
        // Vietnamese by default; the English switch changes the words, not the numbers.
        let header: String = c.execute("return document.querySelector('#table thead').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(header.contains("Tỷ lệ trực tuyến"), "{header}");
        c.find(Locator::Id("lang")).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;
        let header: String = c.execute("return document.querySelector('#table thead').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(header.contains("Online rate"), "{header}");
        same_numbers(&table(c).await, &answer, "overview in English");

        // Below target: the filter keeps exactly the agencies that miss a target.
        c.find(Locator::Id("below-only")).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;
        let below = table(c).await;
        let missing = answer["rows"].as_array().unwrap().iter()
            .filter(|r| r["parent"] == "000.00.00.H27" && (r["online_met"] == false || r["postal_met"] == false)).count();
        assert_eq!(below.len(), missing + 1);
        c.find(Locator::Id("below-only")).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;

        // Sorting by online rate, descending.
        c.find(Locator::Css("#table th[data-key=online_rate]")).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;
        let rates: Vec<f64> = table(c).await[1..].iter().map(|r| r["cells"]["online_rate"].as_f64().unwrap_or(-1.0)).collect();
        assert!(rates.windows(2).all(|w| w[0] >= w[1]), "{rates:?}");

        // Drill-down: a district, then its communes, as the API's subtree of that district.
        let district = "000.00.21.H27";
        c.find(Locator::Css(&format!("#table tr[data-agency='{district}'] td[data-key=name]"))).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;
        let (_, sub) = outside(|| s.get(&format!("/v1/indicators?period={period}&group=subtree&agency={district}"), None));
        let shown = table(c).await;
        same_numbers(&shown, &sub, "drill-down");
        assert_eq!(shown[0]["agency"], district);
        assert!(shown[1..].iter().all(|r| r["agency"].as_str().unwrap().starts_with("000.21.")), "communes of the district");
        let crumbs: String = c.execute("return document.getElementById('crumbs').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(crumbs.contains('›'), "{crumbs}");
        snap(c, "drill-down").await;

        // Another period changes the numbers, to the API's for that period.
        c.execute("const p = document.getElementById('period'); p.value = '2018-Q2'; p.dispatchEvent(new Event('change'))", vec![]).await.unwrap();
        n = rendered(c, "rendered", n).await;
        let (_, earlier) = outside(|| s.get(&format!("/v1/indicators?period=2018-Q2&group=subtree&agency={district}"), None));
        assert_ne!(earlier["rows"][0]["received"], sub["rows"][0]["received"]);
        same_numbers(&table(c).await, &earlier, "another period");

        // "As known on" a date: the rates as the API answered them with known_at, beside today's.
        c.execute("const k = document.getElementById('known-at'); k.value = '2018-05-01'; k.dispatchEvent(new Event('change'))", vec![]).await.unwrap();
        let _ = rendered(c, "rendered", n).await;
        let (_, known) = outside(|| s.get(&format!("/v1/indicators?period=2018-Q2&group=subtree&agency={district}&known_at=2018-05-01"), None));
        for row in table(c).await {
            let agency = row["agency"].as_str().unwrap();
            let then = known["rows"].as_array().unwrap().iter().find(|r| r["agency"].as_str() == Some(agency)).unwrap();
            for key in ["online_rate", "postal_rate"] {
                assert!(same(&row["cells"][&format!("{key}_known")], &then[key]), "{agency} {key} as known");
            }
        }
        assert_ne!(known["rows"][0]["received"], earlier["rows"][0]["received"], "the date makes a difference");
        snap(c, "as-known-on").await;

        // Downloads: the links are the API's CSV and XLSX of the table on screen.
        let csv: String = c.execute("return document.getElementById('csv').href", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(csv.contains("format=csv") && csv.contains(district), "{csv}");
        let body = outside(|| reqwest::blocking::get(&csv).unwrap().text().unwrap());
        assert!(body.lines().count() > 1, "{body}");
    });
}

#[test]
fn trends_catalogue_and_the_audit_view() {
    let p = Province::start();
    let s = &p.server;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = browser(1280, 900).await;
        let c = &b.client;
        c.goto(&format!("{}/dashboard/", s.base)).await.unwrap();
        rendered(c, "rendered", 0).await;

        // Trends: one point per quarter with dossiers, for the province, and for a chosen agency too (the charts
        // are uPlot's; each says how many points each series has).
        c.find(Locator::Css("#tabs button[data-view=trends]")).await.unwrap().click().await.unwrap();
        let n = rendered(c, "charted", 0).await;
        let points = |series: &'static str| async move {
            // uPlot's data: the quarters, then the province's series, then the agency's.
            let index = if series == "province" { 1 } else { 2 };
            c.execute(&format!("const u = window.casetrailCharts['chart-online']; \
                 return [document.getElementById('chart-online').dataset.{series} ?? null, u.data[{index}]?.length ?? null]"),
                vec![]).await.unwrap()
        };
        assert_eq!(points("province").await[0], json!("8"), "2018-Q1 to 2019-Q4");
        assert_eq!(points("province").await[1], json!(8));
        assert_eq!(points("agency").await[0], json!(null));
        c.execute("const a = document.getElementById('trend-agency'); a.value = '000.00.21.H27'; a.dispatchEvent(new Event('change'))", vec![]).await.unwrap();
        rendered(c, "charted", n).await;
        assert_eq!(points("agency").await, json!(["8", 8]));
        assert!(c.current_url().await.unwrap().query().unwrap().contains("agency=000.00.21.H27"), "the address names the agency");
        // Hovering a quarter shows its values: the legend holds the quarter and each series' rate, the API's.
        let (_, series) = outside(|| s.get("/v1/indicators/series?from=2018-Q1&to=2019-Q4&group=province", None));
        let printed = series["periods"][3]["rows"][0]["printed"]["online_rate"].as_str().unwrap().to_owned();
        let hovered = c.execute(r#"const u = window.casetrailCharts['chart-online'];
            u.setCursor({ left: u.valToPos(3, 'x'), top: u.valToPos(1, 'y') });
            return [...u.root.querySelectorAll('.u-legend .u-value')].map(e => e.textContent)"#,
            vec![]).await.unwrap();
        assert_eq!(hovered[0], json!("2018-Q4"));
        assert_eq!(hovered[1], json!(format!("{printed} %")), "the province's rate for 2018-Q4, as the API prints it");
        // Round ticks on the rate axis (0 and multiples of a round step), and the target line labelled.
        let ticks = c.execute("return window.casetrailCharts['chart-online'].axes[1]._splits", vec![]).await.unwrap();
        let ticks: Vec<f64> = ticks.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let step = ticks[1] - ticks[0];
        assert!([0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 25.0].iter().any(|r| (step - r).abs() < 1e-9), "{ticks:?}");
        assert!(ticks.iter().all(|t| (t / step - (t / step).round()).abs() < 1e-9), "{ticks:?}");
        let label = c.execute("return document.getElementById('chart-online').dataset.target", vec![]).await.unwrap();
        assert_eq!(label, json!("Chỉ tiêu 20 %"));
        snap(c, "trends").await;

        // The catalogue: every procedure in force, as the public catalogue lists it.
        c.find(Locator::Css("#tabs button[data-view=catalogue]")).await.unwrap().click().await.unwrap();
        rendered(c, "catalogued", 0).await;
        let (_, catalogue) = outside(|| s.get("/v1/catalogue", None));
        let offered: usize = catalogue["agencies"].as_array().unwrap().iter().map(|a| a["procedures"].as_array().unwrap().len()).sum();
        assert!(offered > 0);
        let rows = c.execute("return document.querySelectorAll('#catalogue-table tbody tr').length", vec![]).await.unwrap();
        assert_eq!(rows, json!(offered));

        // Audit: without a token, or with an analyst's, the trail is refused; an auditor sees it and downloads
        // the bundle.
        let (_, page) = outside(|| s.get("/v1/events?type=dossier.returned&limit=1", Some(&s.admin)));
        let dossier = page["events"][0]["dossier"].as_str().unwrap().to_owned();
        c.find(Locator::Css("#tabs button[data-view=audit]")).await.unwrap().click().await.unwrap();
        let mut looked = 0;
        for (token, allowed) in [("", false), (s.analyst.as_str(), false), (s.auditor.as_str(), true)] {
            c.execute("const t = document.getElementById('token'); t.value = arguments[0]; t.dispatchEvent(new Event('change'))", vec![json!(token)]).await.unwrap();
            c.execute("document.getElementById('dossier').value = arguments[0]; document.querySelector('#lookup button').click()", vec![json!(dossier)]).await.unwrap();
            looked = rendered(c, "looked", looked).await;
            let shown = c.execute("return document.querySelectorAll('#timeline li').length", vec![]).await.unwrap();
            let message: String = c.execute("return document.getElementById('audit-message').textContent", vec![]).await.unwrap().as_str().unwrap().into();
            if allowed {
                let (_, trail) = outside(|| s.get(&format!("/v1/dossiers/{dossier}/events"), Some(&s.auditor)));
                assert_eq!(shown, json!(trail["events"].as_array().unwrap().len()), "{message}");
                snap(c, "audit").await;
            } else {
                assert_eq!(shown, json!(0));
                assert!(message.contains("auditor"), "{message}");
            }
        }
        c.find(Locator::Id("bundle")).await.unwrap().click().await.unwrap();
        let bytes = rendered(c, "bundleBytes", 0).await;
        let (_, bundle) = outside(|| s.get_bytes(&format!("/v1/dossiers/{dossier}/bundle"), Some(&s.auditor)));
        assert!(bytes > 0 && (bytes as i64 - bundle.len() as i64).abs() < 4_000, "{bytes} vs {}", bundle.len());
    });
}

#[test]
fn the_dashboard_fits_a_phone_and_needs_nothing_from_elsewhere() {
    let p = Province::start();
    let s = &p.server;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = browser(390, 844).await;
        let c = &b.client;
        c.goto(&format!("{}/dashboard/", s.base)).await.unwrap();
        rendered(c, "rendered", 0).await;
        // Nothing wider than the screen but the table's own scrolling box.
        let overflow = c.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
        assert!(overflow.as_i64().unwrap() <= 0, "the page is wider than a phone: {overflow}");
        snap(c, "phone").await;
        // Every resource came from the server itself.
        let origins = c.execute("return [...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))]", vec![]).await.unwrap();
        assert_eq!(origins, json!([s.base.trim_end_matches('/')]), "only this server");
    });
    // The page's policy forbids anything else.
    let resp = reqwest::blocking::get(format!("{}/dashboard/", s.base)).unwrap();
    let policy = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
}

#[test]
fn with_public_tables_off_the_dashboard_asks_for_a_token_and_then_shows_them() {
    let p = Province::start_with(&["--public-indicators", "false"]);
    let s = &p.server;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = browser(1280, 900).await;
        let c = &b.client;
        c.goto(&format!("{}/dashboard/", s.base)).await.unwrap();
        // Nothing to show without a token: the page says why, and shows no figures.
        let deadline = Instant::now() + Duration::from_secs(10);
        let summary = loop {
            let text: String = c.execute("return document.getElementById('summary').textContent", vec![]).await.unwrap().as_str().unwrap().into();
            if !text.is_empty() || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(summary.contains("Mã truy cập"), "{summary}");
        assert_eq!(c.execute("return document.querySelectorAll('#table tbody tr').length", vec![]).await.unwrap(), json!(0));
        // An analyst's token: the tables load, the same as the API gives that token.
        c.execute("const t = document.getElementById('token'); t.value = arguments[0]; t.dispatchEvent(new Event('change'))", vec![json!(s.analyst)]).await.unwrap();
        rendered(c, "rendered", 0).await;
        let (_, answer) = outside(|| s.get(&format!("/v1/indicators?period={}&group=subtree&agency=000.00.00.H27", p.period), Some(&s.analyst)));
        same_numbers(&table(c).await, &answer, "with a token");
        // The CSV download goes through the API with that token, and is the API's CSV.
        c.find(Locator::Id("csv")).await.unwrap().click().await.unwrap();
        let bytes = rendered(c, "downloadedBytes", 0).await;
        let (status, csv) = outside(|| {
            s.get_bytes(&format!("/v1/indicators?period={}&group=subtree&agency=000.00.00.H27&lang=vi&format=csv", p.period), Some(&s.analyst))
        });
        assert_eq!(status, 200);
        assert_eq!(bytes, csv.len() as u64, "the downloaded CSV is the API's");
    });
}

#[test]
fn profiles_addresses_the_form_and_a_published_table_checked() {
    let p = Province::start();
    let s = &p.server;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = browser(1280, 900).await;
        let c = &b.client;
        c.goto(&format!("{}/dashboard/", s.base)).await.unwrap();
        let mut n = rendered(c, "rendered", 0).await;

        // The profiles offered are the API's, the default chosen; another one changes the table to the API's
        // answer under it, its rates printed as that profile prints them, and the stamp names it.
        let (_, profiles) = outside(|| s.get("/v1/indicators/profiles", None));
        let ids: Vec<Value> = profiles["profiles"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
        let offered = c.execute("return [...document.getElementById('profile').options].map(o => o.value)", vec![]).await.unwrap();
        assert_eq!(offered, json!(ids));
        assert_eq!(c.execute("return document.getElementById('profile').value", vec![]).await.unwrap(), json!("national"));
        c.execute("const p = document.getElementById('profile'); p.value = 'kon-tum'; p.dispatchEvent(new Event('change'))", vec![]).await.unwrap();
        n = rendered(c, "rendered", n).await;
        let (_, answer) = outside(|| s.get(&format!("/v1/indicators?period={}&group=subtree&agency=000.00.00.H27&profile=kon-tum", p.period), None));
        let (_, national) = outside(|| s.get(&format!("/v1/indicators?period={}&group=subtree&agency=000.00.00.H27", p.period), None));
        assert_ne!(answer["rows"][0]["online_rate"], national["rows"][0]["online_rate"], "the profile makes a difference");
        same_numbers(&table(c).await, &answer, "under kon-tum");
        let texts = c.execute("return [...document.querySelectorAll('#table tbody tr')].map(tr => [tr.dataset.agency, tr.querySelector('td[data-key=online_rate]').textContent])", vec![]).await.unwrap();
        for pair in texts.as_array().unwrap() {
            let row = answer["rows"].as_array().unwrap().iter().find(|r| r["agency"] == pair[0]).unwrap();
            assert_eq!(pair[1].as_str().unwrap(), format!("{} %", row["printed"]["online_rate"].as_str().unwrap()));
        }
        let stamp: String = c.execute("return document.getElementById('stamp').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(stamp.contains("kon-tum") && stamp.contains("decree-09"), "{stamp}");

        // A drill-down and "as known on": the address then reproduces the view in a fresh page.
        let district = "000.00.21.H27";
        c.find(Locator::Css(&format!("#table tr[data-agency='{district}'] td[data-key=name]"))).await.unwrap().click().await.unwrap();
        n = rendered(c, "rendered", n).await;
        c.execute("const k = document.getElementById('known-at'); k.value = '2019-11-01'; k.dispatchEvent(new Event('change'))", vec![]).await.unwrap();
        rendered(c, "rendered", n).await;
        let url = c.current_url().await.unwrap();
        let query = url.query().unwrap().to_owned();
        for part in ["view=overview", "period=2019-Q4", &format!("path={}", district.replace('.', ".")), "profile=kon-tum", "known_at=2019-11-01"] {
            assert!(query.contains(part), "{part} in {query}");
        }
        let before = table(c).await;
        let link: String = c.execute("return document.getElementById('permalink').href", vec![]).await.unwrap().as_str().unwrap().into();
        assert_eq!(link, url.as_str());
        c.goto(url.as_str()).await.unwrap();
        rendered(c, "rendered", 0).await;
        assert_eq!(table(c).await, before, "the address reproduces the table");
        assert_eq!(c.execute("return document.getElementById('profile').value", vec![]).await.unwrap(), json!("kon-tum"));

        // The official form of the view on screen, as the API gives it.
        let form: String = c.execute("return document.getElementById('form').href", vec![]).await.unwrap().as_str().unwrap().into();
        for part in ["/v1/indicators/form?", "period=2019-Q4", &format!("agency={district}"), "profile=kon-tum", "known_at=2019-11-01", "format=xlsx"] {
            assert!(form.contains(part), "{part} in {form}");
        }
        let (status, kind, bytes) = outside(|| {
            let r = reqwest::blocking::get(&form).unwrap();
            let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
            (r.status().as_u16(), kind, r.bytes().unwrap())
        });
        assert_eq!(status, 200);
        assert!(kind.contains("spreadsheetml"), "{kind}");
        assert!(bytes.starts_with(b"PK"), "a workbook");

        // A published table checked by upload: the seed letter's 7.68 % is named a slip, with 7.62 %.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("letter.csv");
        std::fs::write(&file, generator::published::SEED_LETTER_CSV).unwrap();
        c.find(Locator::Css("#tabs button[data-view=check]")).await.unwrap().click().await.unwrap();
        assert!(c.current_url().await.unwrap().query().unwrap().contains("view=check"));
        c.find(Locator::Id("check-file")).await.unwrap().send_keys(file.to_str().unwrap()).await.unwrap();
        c.execute("document.getElementById('check-period').value = ''", vec![]).await.unwrap();
        c.find(Locator::Css("#check-form button[type=submit]")).await.unwrap().click().await.unwrap();
        rendered(c, "checked", 0).await;
        let slip = c.execute("const d = document.querySelector('#check-table [data-verdict=slip]'); return d && [d.dataset.rate, d.dataset.correct]", vec![]).await.unwrap();
        assert_eq!(slip, json!(["online_rate", "7.62"]));
        let summary: String = c.execute("return document.getElementById('check-summary').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(summary.contains('1'), "{summary}");
        snap(c, "check").await;
    });
}
