//! `cloakfs login` against a real `cloakfs serve`: Login Flow v2 through the server's login page, a wrong
//! password refused there, and the app password then working for other commands. No OS keyring is
//! available in the test (no D-Bus session), so the password is shown once and stored nowhere.

#[path = "common/server.rs"]
mod server;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use server::{files_below, TempDir, TestServer, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flow_v2_hands_out_a_working_app_password() {
    let data = TempDir::new("login-data");
    let config = TempDir::new("login-config");
    let server = TestServer::start(&data.0, &["alice"]);

    let mut login = server::cloakfs()
        .args(["login", &server.url])
        .env("XDG_CONFIG_HOME", &config.0)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("CLOAKFS_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(login.stdout.take().unwrap());
    let mut login_url = None;
    let mut line = String::new();
    while login_url.is_none() && stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(found) = line.split_whitespace().find(|word| word.contains("/index.php/login/v2/flow/")) {
            login_url = Some(found.to_owned());
        }
        line.clear();
    }
    let login_url = login_url.expect("the login URL is printed");

    let http = reqwest::Client::new();
    let page = http.get(&login_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let wrong = http.post(&login_url).form(&[("user", "alice"), ("password", "wrong-password")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let granted = http.post(&login_url).form(&[("user", "alice"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(granted.status(), 200);

    let status = tokio::task::spawn_blocking(move || login.wait().unwrap()).await.unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("No OS keyring is available"), "{rest}");
    let app_password = rest
        .lines()
        .map(str::trim)
        .find(|line| line.len() == 64 && line.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .expect("the app password is shown")
        .to_owned();
    // A flow is used once.
    let again = http.post(&login_url).form(&[("user", "alice"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(again.status(), 404);

    // The app password works; nothing about it was written to the config directory.
    let init = server::cloakfs()
        .args(["keys", "init", "--server", &server.url, "--user", "alice"])
        .env("XDG_CONFIG_HOME", &config.0)
        .env("CLOAKFS_PASSWORD", &app_password)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    for file in files_below(&config.0) {
        let content = std::fs::read(&file).unwrap();
        assert!(!content.windows(64).any(|window| window == app_password.as_bytes()), "{}", file.display());
    }
    // With neither CLOAKFS_PASSWORD nor a keyring nor a terminal, a command fails clearly instead of hanging.
    let output = server::cloakfs()
        .args(["keys", "check", "--server", &server.url, "--user", "alice"])
        .env("XDG_CONFIG_HOME", &config.0)
        .env_remove("CLOAKFS_PASSWORD")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("CLOAKFS_MNEMONIC", "abandon")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
}
