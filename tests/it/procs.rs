//! Every process a test starts ends with the test: the server, ChromeDriver, the browser and the helpers the
//! browser detaches, whether the test passes or panics (the guards' `Drop`, `Proc`).

use super::{dashboard, http, marked, processes_in};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a test left running that points into `dir` or carries `mark`, after waiting up to five seconds for it
/// to go.
fn survivors(dir: &std::path::Path, mark: &str) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = processes_in(dir);
        left.extend(marked(mark));
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn processes_end_with_the_test_that_started_them_even_when_it_panics() {
    let started: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = http::Server::start(&[]);
        started
            .lock()
            .unwrap()
            .push((server.dir.path().to_owned(), server.child.mark().to_owned()));
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let b = dashboard::browser(800, 600).await;
            b.client
                .goto(&format!("{}/dashboard/", server.base))
                .await
                .unwrap();
            let (profile, mark) = (b.profile.path().to_owned(), b.driver.mark().to_owned());
            // Everything is running, and the checks below can see it: the driver, the browser's processes (in
            // the profile's directory) and its detached helpers (by their mark).
            let running = processes_in(&profile);
            assert!(
                running.iter().any(|(_, c)| c.contains("chromium")),
                "no browser found running: {running:?}"
            );
            assert!(running.iter().any(|(_, c)| c.contains("chromedriver")));
            assert!(!marked(&mark).is_empty());
            started.lock().unwrap().push((profile, mark));
            panic!("a test failing while its server and browser run");
        });
    }));
    assert!(outcome.is_err(), "the test body was meant to panic");
    let started = started.into_inner().unwrap();
    assert_eq!(started.len(), 2, "a server and a browser were started");
    for (dir, mark) in &started {
        let left = survivors(dir, mark);
        assert!(
            left.is_empty(),
            "still running after the test ended ({}): {left:#?}",
            dir.display()
        );
    }
}
