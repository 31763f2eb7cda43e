//! `telering passwd`: add, update or delete a user of a password file, in
//! Mosquitto 2's format (as `mosquitto_passwd -b` and `-D` do; the files
//! are interchangeable).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use telering::mqtt::auth::PasswordFile;

/// Options of `telering passwd`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The password file; created (mode 0600) when missing.
    pub file: PathBuf,
    /// The user to add, update or delete.
    pub user: String,
    /// The password. Without it the password is read from standard input:
    /// one line when it is not a terminal, else prompted for twice without
    /// echo.
    #[arg(long, conflicts_with = "delete")]
    pub password: Option<String>,
    /// Delete the user instead.
    #[arg(long, short = 'D')]
    pub delete: bool,
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut file = if args.file.exists() {
        PasswordFile::load(&args.file)?
    } else if args.delete {
        return Err(format!("{}: no such file", args.file.display()).into());
    } else {
        PasswordFile::new()
    };
    if args.delete {
        if !file.remove(&args.user) {
            return Err(format!("user {:?} is not in {}", args.user, args.file.display()).into());
        }
    } else {
        let password = match &args.password {
            Some(p) => p.clone(),
            None => read_password()?,
        };
        if password.is_empty() {
            return Err("empty password".into());
        }
        file.set(&args.user, password.as_bytes())?;
    }
    file.save(&args.file)?;
    Ok(())
}

/// The password from standard input: a line when piped, a double prompt
/// without echo on a terminal.
fn read_password() -> Result<String, Box<dyn std::error::Error>> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(line.strip_suffix('\r').unwrap_or(line).to_string());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Reenter password: ")?;
    if first != again {
        return Err("passwords do not match".into());
    }
    Ok(first)
}
