//! The CLI as a user meets it: queries over small files, every kind of bad
//! input, interruption, and cleanup.

mod common;

/// The launcher `common::run` re-runs this binary as, to measure a child's
/// own peak RSS; run plainly, it checks that measurement.
#[test]
fn launcher() {
    common::launcher();
}

use std::path::Path;

use common::{bin, entries, interrupt_when, lineitem_sf1, run, run_in, scratch};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn people(dir: &Path) -> String {
    let path = dir.join("people.csv");
    write(
        &path,
        "id,name,age,city\n1,ann,34,oslo\n2,bob,,rome\n3,cy,51,oslo\n4,di,27,lima\n",
    );
    path.display().to_string()
}

#[test]
fn a_query_prints_an_aligned_table_with_the_row_count() {
    let dir = scratch("table");
    let csv = people(&dir);
    let r = run(&[
        "sql",
        &format!("SELECT name, age * 2 AS twice FROM '{csv}' WHERE city = 'oslo'"),
        "--report",
        "none",
    ]);
    r.ok();
    assert!(
        r.stdout.contains("│ name    │ twice  │") || r.stdout.contains("name"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("│ ann "), "{}", r.stdout);
    assert!(r.stdout.contains("68"), "{}", r.stdout);
    assert!(r.stdout.contains("2 rows, 2 columns"), "{}", r.stdout);
}

#[test]
fn csv_and_ndjson_go_to_stdout_in_full() {
    let dir = scratch("stdout-formats");
    let csv = people(&dir);
    let sql = format!("SELECT id, name, age FROM '{csv}' WHERE age IS NOT NULL");
    let r = run(&["sql", &sql, "--format", "csv", "--report", "none"]);
    r.ok();
    assert_eq!(r.stdout, "id,name,age\n1,ann,34\n3,cy,51\n4,di,27\n");
    let r = run(&["sql", &sql, "--format", "ndjson", "--report", "none"]);
    r.ok();
    assert_eq!(
        r.stdout.lines().next(),
        Some(r#"{"id":1,"name":"ann","age":34}"#)
    );
    // And NDJSON reads back what it wrote.
    let nd = dir.join("people.ndjson");
    write(&nd, &r.stdout);
    let r = run(&[
        "sql",
        &format!(
            "SELECT name FROM read_ndjson('{}') WHERE age > 30",
            nd.display()
        ),
        "--format",
        "csv",
        "--report",
        "none",
    ]);
    r.ok();
    assert_eq!(r.stdout, "name\nann\ncy\n");
}

#[test]
fn read_csv_options_are_honoured() {
    let dir = scratch("csv-options");
    let path = dir.join("data.txt");
    write(&path, "1|x|NA\n2|'a|b'|7\n");
    let sql = format!(
        "SELECT a, b, c FROM read_csv('{}', header=false, delim='|', quote='''', nullstr='NA', \
         columns={{'a': 'BIGINT', 'b': 'VARCHAR', 'c': 'INTEGER'}}) WHERE c IS NULL OR c > 5",
        path.display()
    );
    let r = run(&["sql", &sql, "--format", "csv", "--report", "none"]);
    r.ok();
    assert_eq!(r.stdout, "a,b,c\n1,x,\n2,a|b,7\n");
}

#[test]
fn with_union_all_subqueries_limit_and_offset_compose() {
    let dir = scratch("compose");
    let csv = people(&dir);
    let sql = format!(
        "WITH adults AS (SELECT id, name FROM '{csv}' WHERE age >= 30), \
              others AS (SELECT id, name FROM '{csv}' WHERE age < 30 OR age IS NULL) \
         SELECT t.name, t.id + 100 AS k FROM (SELECT * FROM adults UNION ALL SELECT * FROM others) AS t \
         LIMIT 2 OFFSET 1"
    );
    let r = run(&["sql", &sql, "--format", "csv", "--report", "none"]);
    r.ok();
    assert_eq!(r.stdout, "name,k\ncy,103\nbob,102\n");
}

#[test]
fn order_by_names_aliases_ordinals_expressions_and_null_order() {
    let dir = scratch("order-by");
    let csv = people(&dir);
    let cases = [
        // NULLS LAST is the default, for ASC and DESC alike (DuckDB's).
        (
            "SELECT name, age FROM '{csv}' ORDER BY age",
            "di,27\nann,34\ncy,51\nbob,\n",
        ),
        (
            "SELECT name, age FROM '{csv}' ORDER BY age DESC",
            "cy,51\nann,34\ndi,27\nbob,\n",
        ),
        (
            "SELECT name, age FROM '{csv}' ORDER BY age NULLS FIRST",
            "bob,\ndi,27\nann,34\ncy,51\n",
        ),
        (
            "SELECT name, age AS years FROM '{csv}' ORDER BY years DESC NULLS FIRST",
            "bob,\ncy,51\nann,34\ndi,27\n",
        ),
        (
            "SELECT name, city FROM '{csv}' ORDER BY 2 DESC, 1",
            "bob,rome\nann,oslo\ncy,oslo\ndi,lima\n",
        ),
        (
            "SELECT id, name FROM '{csv}' ORDER BY -id",
            "4,di\n3,cy\n2,bob\n1,ann\n",
        ),
        (
            "SELECT name, city, age FROM '{csv}' ORDER BY city, age DESC LIMIT 2 OFFSET 1",
            "cy,oslo,51\nann,oslo,34\n",
        ),
    ];
    for (sql, rows) in cases {
        let sql = sql.replace("{csv}", &csv);
        let r = run(&["sql", &sql, "--format", "csv", "--report", "none"]);
        r.ok();
        let body: Vec<&str> = r.stdout.lines().skip(1).collect();
        assert_eq!(body.join("\n") + "\n", rows, "{sql}");
    }
}

#[test]
fn a_script_file_runs_each_statement() {
    let dir = scratch("script");
    let csv = people(&dir);
    let script = dir.join("job.sql");
    write(
        &script,
        &format!("SELECT count_me FROM (SELECT id AS count_me FROM '{csv}') LIMIT 1;\nSELECT name FROM '{csv}' WHERE id = 4;\n"),
    );
    let r = run(&[
        "sql",
        "-f",
        script.to_str().unwrap(),
        "--format",
        "csv",
        "--report",
        "none",
    ]);
    r.ok();
    assert_eq!(r.stdout, "count_me\n1\nname\ndi\n");
    // With -o the script must hold exactly one query.
    let out = dir.join("out.csv");
    let r = run(&[
        "sql",
        "-f",
        script.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("has 2 queries"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn explain_shows_filters_columns_and_limits_pushed_into_the_scan() {
    let sql = format!(
        "EXPLAIN SELECT l_orderkey, l_quantity * 2 AS q FROM (SELECT * FROM '{}') \
         WHERE l_shipdate >= DATE '1995-01-01' AND l_quantity < 5 LIMIT 10",
        lineitem_sf1().display()
    );
    let r = run(&["sql", &sql, "--report", "none"]);
    r.ok();
    let scan = r
        .stdout
        .lines()
        .find(|l| l.contains("Scan parquet"))
        .unwrap();
    assert!(
        scan.contains("columns=[l_orderkey, l_quantity]"),
        "{}",
        r.stdout
    );
    assert!(
        scan.contains("l_shipdate >= DATE '1995-01-01'"),
        "{}",
        r.stdout
    );
    assert!(scan.contains("l_quantity < 5.00"), "{}", r.stdout);
    assert!(scan.contains("limit=10"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("CAST"),
        "constants are folded:\n{}",
        r.stdout
    );
    assert_eq!(r.stdout.matches("Project").count(), 1, "{}", r.stdout);
    assert!(
        !r.stdout.contains("Filter"),
        "the filter should be in the scan:\n{}",
        r.stdout
    );
}

#[test]
fn limit_stops_the_scan_early() {
    let sql = format!(
        "SELECT l_orderkey FROM '{}' LIMIT 3",
        lineitem_sf1().display()
    );
    let r = run(&["sql", &sql, "--report", "json", "--format", "csv"]);
    r.ok();
    assert_eq!(r.stdout.lines().count(), 4);
    let json: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    let read = json["rows_read"].as_u64().unwrap();
    assert!(read < 100_000, "read {read} rows for LIMIT 3");
}

#[test]
fn row_groups_are_pruned_by_statistics() {
    // l_orderkey grows through the file, so a narrow key range touches few
    // row groups; the rest are never decoded.
    let sql = format!(
        "SELECT l_orderkey FROM '{}' WHERE l_orderkey < 100",
        lineitem_sf1().display()
    );
    let r = run(&["sql", &sql, "--report", "json", "--format", "csv"]);
    r.ok();
    let json: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert!(json["rows_written"].as_u64().unwrap() > 0);
    // Rows read count every row the reader decoded, before the filter: the
    // one row group (of six, about a million rows each) that may match.
    assert!(
        json["rows_read"].as_u64().unwrap() <= 1_100_000,
        "{}",
        r.stderr
    );
}

#[test]
fn inspect_shows_schema_row_groups_compression_and_statistics() {
    let r = run(&["inspect", lineitem_sf1().to_str().unwrap()]);
    r.ok();
    assert!(r.stdout.contains("rows 6,001,215"), "{}", r.stdout);
    assert!(r.stdout.contains("l_shipdate DATE [ZSTD"), "{}", r.stdout);
    assert!(
        r.stdout.contains("min=1992-01-02 max=1998-12-01"),
        "{}",
        r.stdout
    );
}

fn assert_error(args: &[&str], code: i32, needles: &[&str]) {
    let r = run(args);
    assert_eq!(r.code, code, "stderr: {}", r.stderr);
    let line = r.stderr.lines().next().unwrap_or_default();
    assert!(line.starts_with("highwater: error: "), "{}", r.stderr);
    for needle in needles {
        assert!(
            r.stderr.contains(needle),
            "missing '{needle}' in: {}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn a_missing_file_is_named() {
    assert_error(
        &["sql", "SELECT * FROM 'no/such/file.parquet'"],
        6,
        &["no/such/file.parquet", "No such file"],
    );
    assert_error(
        &["sql", "SELECT * FROM 'no/such/*.parquet'"],
        3,
        &["no files match"],
    );
}

#[test]
fn a_truncated_or_corrupt_parquet_file_is_named() {
    let dir = scratch("corrupt");
    let bytes = std::fs::read(lineitem_sf1()).unwrap();
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..100_000]).unwrap();
    assert_error(
        &["sql", &format!("SELECT * FROM '{}'", truncated.display())],
        4,
        &["truncated.parquet", "Parquet"],
    );
    // Intact footer, damaged pages: found while reading, not at plan time.
    let mut damaged = bytes.clone();
    for b in &mut damaged[4..2_000_000] {
        *b = 0xAB;
    }
    let damaged_path = dir.join("damaged.parquet");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let out = dir.join("out.parquet");
    assert_error(
        &[
            "sql",
            &format!("SELECT * FROM '{}'", damaged_path.display()),
            "-o",
            out.to_str().unwrap(),
        ],
        4,
        &["damaged.parquet"],
    );
    assert_eq!(
        entries(&dir),
        vec!["damaged.parquet", "truncated.parquet"],
        "no output left behind"
    );
}

#[test]
fn malformed_csv_rows_name_the_file_line_and_column() {
    let dir = scratch("bad-csv");
    let fields = dir.join("fields.csv");
    write(&fields, "a,b,c\n1,2,3\n4,5\n");
    assert_error(
        &["sql", &format!("SELECT * FROM '{}'", fields.display())],
        4,
        &["fields.csv line 3", "expected 3 fields, found 2"],
    );
    let typed = dir.join("typed.csv");
    let mut text = String::from("id,price\n");
    for i in 0..30_000 {
        text.push_str(&format!("{i},{i}.5\n"));
    }
    text.push_str("30000,oops\n");
    write(&typed, &text);
    let out = dir.join("out.parquet");
    assert_error(
        &[
            "sql",
            &format!("SELECT * FROM '{}'", typed.display()),
            "-o",
            out.to_str().unwrap(),
        ],
        4,
        &["typed.csv line 30002", "column 'price'", "'oops'", "DOUBLE"],
    );
    assert!(!out.exists(), "a failed run left its output");
    assert_eq!(entries(&dir), vec!["fields.csv", "typed.csv"]);
}

#[test]
fn bad_ndjson_names_the_line() {
    let dir = scratch("bad-ndjson");
    let path = dir.join("rows.ndjson");
    write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":\n");
    assert_error(
        &["sql", &format!("SELECT * FROM '{}'", path.display())],
        4,
        &["rows.ndjson line 3", "not valid JSON"],
    );
}

#[test]
fn unknown_names_and_type_errors_point_at_the_sql() {
    let dir = scratch("plan-errors");
    let csv = people(&dir);
    assert_error(
        &["sql", &format!("SELECT nmae FROM '{csv}'")],
        3,
        &[
            "unknown column 'nmae'",
            "did you mean 'name'",
            "line 1:8",
            "^",
        ],
    );
    assert_error(
        &["sql", &format!("SELECT frobnicate(id) FROM '{csv}'")],
        3,
        &["unknown function 'frobnicate'"],
    );
    assert_error(
        &["sql", &format!("SELECT name + 1 FROM '{csv}'")],
        3,
        &["cannot apply '+' to VARCHAR and BIGINT"],
    );
    assert_error(
        &["sql", &format!("SELECT id FROM '{csv}' WHERE name")],
        3,
        &["WHERE needs a BOOLEAN"],
    );
    assert_error(&["sql", "SELECT FROM WHERE"], 3, &["SQL syntax error"]);
    assert_error(
        &[
            "sql",
            &format!("SELECT id FROM '{csv}' a JOIN '{csv}' b ON a.id = b.id"),
        ],
        3,
        &["column reference 'id' is ambiguous", "line 1:8"],
    );
}

#[test]
fn integer_overflow_is_an_error() {
    let dir = scratch("overflow");
    let path = dir.join("big.csv");
    write(&path, "n\n9223372036854775000\n");
    assert_error(
        &["sql", &format!("SELECT n * 2 FROM '{}'", path.display())],
        1,
        &["Overflow"],
    );
}

#[test]
fn an_unwritable_output_is_named() {
    let dir = scratch("unwritable");
    let csv = people(&dir);
    assert_error(
        &[
            "sql",
            &format!("SELECT * FROM '{csv}'"),
            "-o",
            "/no/such/dir/out.parquet",
        ],
        6,
        &["/no/such/dir/out.parquet"],
    );
    assert_error(
        &[
            "sql",
            &format!("SELECT * FROM '{csv}'"),
            "-o",
            dir.to_str().unwrap(),
        ],
        3,
        &["output format"],
    );
}

#[test]
fn a_full_disk_is_reported_and_leaves_no_partial_output() {
    // /dev/full answers every write with ENOSPC.
    let dir = scratch("full-disk");
    let csv = people(&dir);
    let status = std::process::Command::new(bin())
        .args([
            "sql",
            &format!("SELECT * FROM '{csv}'"),
            "--format",
            "csv",
            "--report",
            "none",
        ])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("disk full"), "{stderr}");
}

#[test]
fn a_memory_limit_below_the_footprint_is_refused_clearly() {
    assert_error(
        &["sql", "SELECT 1 FROM 'x.csv'", "--memory-limit", "5MB"],
        5,
        &["memory limit", "too small"],
    );
    assert_error(
        &["sql", "SELECT 1", "--memory-limit", "lots"],
        3,
        &["cannot read 'lots' as a size"],
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_leaves_nothing_behind() {
    let dir = scratch("sigint");
    let temp = scratch("sigint-temp");
    let sql = format!("SELECT * FROM '{}'", lineitem_sf1().display());
    // Interrupt once the output's temporary file exists, and a little later.
    let started = std::cell::Cell::new(None);
    interrupt_when(&sql, &dir.join("copy.parquet"), &temp, || {
        if entries(&dir).is_empty() {
            return false;
        }
        let since = started.get().unwrap_or_else(std::time::Instant::now);
        started.set(Some(since));
        since.elapsed().as_millis() >= 300
    });
}

#[test]
fn a_killed_runs_spill_directory_is_removed_by_the_next_run() {
    let temp = scratch("stale-spill");
    let stale = temp.join("highwater-4242-1");
    std::fs::create_dir_all(&stale).unwrap();
    write(&stale.join(".lock"), "");
    write(&stale.join("sort-000001.arrows"), "junk");
    let dir = scratch("stale-spill-data");
    let csv = people(&dir);
    run_in(
        &["sql", &format!("SELECT * FROM '{csv}'"), "--report", "none"],
        Some(&temp),
    )
    .ok();
    assert!(entries(&temp).is_empty(), "left: {:?}", entries(&temp));
}

/// A script of several steps: a session table built from a file and added
/// to, a view over it, COPY of the view to Parquet and a query of the
/// same, under 32MB. Afterwards the table files are gone with the run's
/// spill directory.
#[test]
fn a_script_with_session_tables_copy_and_views_runs_under_its_limit_and_cleans_up() {
    let dir = scratch("session_script");
    let temp = dir.join("temp");
    std::fs::create_dir_all(&temp).unwrap();
    let lineitem = common::lineitem_sf01().display().to_string();
    let copied = dir.join("per_part.parquet");
    let script = dir.join("etl.sql");
    write(
        &script,
        &format!(
            "CREATE TABLE li AS SELECT l_orderkey, l_partkey, l_extendedprice FROM '{lineitem}';
             INSERT INTO li SELECT l_orderkey, l_partkey, l_extendedprice FROM '{lineitem}'
                 WHERE l_orderkey <= 1000;
             CREATE VIEW per_part AS
                 SELECT l_partkey, count(*) AS n, sum(l_extendedprice) AS s FROM li GROUP BY 1;
             COPY (SELECT * FROM per_part ORDER BY l_partkey) TO '{}' (FORMAT parquet, COMPRESSION zstd);
             SELECT count(*) AS parts, sum(n) AS rows FROM '{}';",
            copied.display(),
            copied.display()
        ),
    );
    let r = run_in(
        &[
            "sql",
            "-f",
            script.to_str().unwrap(),
            "--memory-limit",
            "32MB",
            "--format",
            "csv",
        ],
        Some(&temp),
    );
    r.ok().assert_rss_under("32MB");
    let expected = run(&[
        "sql",
        &format!(
            "SELECT count(DISTINCT l_partkey) AS parts,
                    count(*) + count(*) FILTER (WHERE l_orderkey <= 1000) AS rows
             FROM '{lineitem}'"
        ),
        "--format",
        "csv",
    ]);
    expected.ok();
    assert!(r.stdout.starts_with("parts,rows\n20000,"), "{}", r.stdout);
    assert_eq!(r.stdout, expected.stdout);
    assert!(
        entries(&temp).is_empty(),
        "left behind: {:?}",
        entries(&temp)
    );
}
