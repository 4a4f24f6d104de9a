//! The PostgreSQL log against real clusters that the tests start themselves: the conformance suite every store
//! passes, and what only several instances on one database can show.

mod maintenance;
mod shared;
mod unknown;

use pglog::cluster::{Cluster, Options};
use pglog::{Config, PgLog};

/// A cluster for tests that never lose the machine (fsync off).
pub fn fast_cluster() -> Cluster {
    Cluster::start(&Options {
        fast_unsafe: true,
        ..Options::default()
    })
    .expect("a PostgreSQL cluster starts")
}

/// A log on a new database of `cluster`.
pub fn fresh(cluster: &Cluster, name: &str) -> (String, PgLog) {
    let url = cluster.create_database(name).expect("a database is made");
    let log = PgLog::open(Config::new(url.clone())).expect("the log opens");
    (url, log)
}

#[test]
fn the_postgres_log_passes_the_conformance_suite() {
    let cluster = fast_cluster();
    let mut n = 0;
    store::conformance(|| {
        n += 1;
        fresh(&cluster, &format!("conformance_{n}")).1
    });
}
