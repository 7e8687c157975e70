//! `sphere-cli uxf pack|unpack|verify|inspect`: the UXF bundle format as a tool.
//! Touches no data dir and no network; everything goes through `sphere_profile::uxf`.

use std::path::Path;

use serde_json::json;
use sphere_profile::uxf::{UxfError, UxfPackage, Value, parse_token_json};

use crate::args::{UxfCommand, UxfPackArgs, UxfUnpackArgs};
use crate::exit::{create_output_dir, user, write_output};
use crate::output::{Printer, path_json};

pub(crate) fn run(cmd: UxfCommand, printer: &Printer) -> anyhow::Result<()> {
    match cmd {
        UxfCommand::Pack(a) => pack(&a, printer),
        UxfCommand::Unpack(a) => unpack(&a, printer),
        UxfCommand::Verify { input } => verify(&input, printer),
        UxfCommand::Inspect { input } => inspect(&input, printer),
    }
}

/// A UXF rejection of the user's input: exit 1 with the reference-style message.
fn bad_input(path: &Path, e: &UxfError) -> anyhow::Error {
    user(format!("{}: {e}", path.display()))
}

/// An input file named on the command line; missing or unreadable is the user's
/// error (exit 1), as for `kv put --file` and `ipfs pin`.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| user(format!("cannot read {}: {e}", path.display())))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn pack(a: &UxfPackArgs, printer: &Printer) -> anyhow::Result<()> {
    let t = a.created_at.unwrap_or_else(now);
    let mut pkg = UxfPackage::new(t);
    if let Some(c) = &a.creator {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(user(format!("--creator must be hex, got {c:?}")));
        }
        pkg = pkg.with_creator(c.clone());
    }
    if let Some(d) = &a.description {
        pkg = pkg.with_description(d.clone());
    }
    let mut count = 0usize;
    for path in &a.tokens {
        let text = read_input(path)?;
        // the library's parser reads every token `uxf unpack` writes (nametags nest
        // deeper than serde_json's default recursion limit allows)
        let v = parse_token_json(&text).map_err(|e| bad_input(path, &e))?;
        let tokens = match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        for tok in &tokens {
            pkg.ingest(tok, t).map_err(|e| bad_input(path, &e))?;
            count += 1;
        }
    }
    let car = pkg.to_car().map_err(|e| user(e.to_string()))?;
    let root = pkg.car_blocks().map_err(|e| user(e.to_string()))?[0]
        .0
        .to_cid_string();
    write_output(&a.output, &car)?;
    printer.result(
        &format!(
            "packed {count} token(s), {} unique element(s), {} bytes\nroot {root}\nwrote {}",
            pkg.pool().len(),
            car.len(),
            a.output.display()
        ),
        &json!({
            "root": root,
            "tokens": count,
            "manifest_entries": pkg.manifest().len(),
            "elements": pkg.pool().len(),
            "bytes": car.len(),
            "output": path_json(&a.output),
        }),
    )?;
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<(Vec<u8>, UxfPackage)> {
    let car = read_input(path)?;
    let pkg = UxfPackage::from_car(&car).map_err(|e| bad_input(path, &e))?;
    Ok((car, pkg))
}

fn unpack(a: &UxfUnpackArgs, printer: &Printer) -> anyhow::Result<()> {
    let (_, pkg) = load(&a.input)?;
    create_output_dir(&a.output)?;
    let mut written = Vec::new();
    for id in pkg.manifest().keys() {
        let tok = pkg
            .assemble(id)
            .map_err(|e| user(format!("token {id}: {e}")))?;
        let path = a.output.join(format!("{id}.json"));
        let mut text = serde_json::to_vec_pretty(&tok)?;
        text.push(b'\n');
        write_output(&path, &text)?;
        written.push(path);
    }
    let human = written
        .iter()
        .map(|p| format!("wrote {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n");
    printer.result(
        &format!("{}\n{} token(s)", human, written.len()),
        &json!({"tokens": written.len(), "files": written.iter().map(|p| path_json(p)).collect::<Vec<_>>()}),
    )?;
    Ok(())
}

fn verify(path: &Path, printer: &Printer) -> anyhow::Result<()> {
    let (_, pkg) = load(path)?;
    let r = pkg.verify();
    for w in &r.warnings {
        printer.warn(&format!("[{}] {}", w.code, w.message));
    }
    if !r.valid {
        let reasons: Vec<String> = r
            .errors
            .iter()
            .map(|e| format!("[UXF:{}] {}", e.code, e.message))
            .collect();
        return Err(user(format!(
            "{}: invalid bundle: {}",
            path.display(),
            reasons.join("; ")
        )));
    }
    printer.result(
        &format!(
            "ok: {} token(s), {} element(s) checked, {} orphan(s), {} instance chain(s)",
            r.stats.tokens_checked,
            r.stats.elements_checked,
            r.stats.orphaned_elements,
            r.stats.instance_chains_checked
        ),
        &json!({
            "valid": true,
            "tokens_checked": r.stats.tokens_checked,
            "elements_checked": r.stats.elements_checked,
            "orphaned_elements": r.stats.orphaned_elements,
            "instance_chains_checked": r.stats.instance_chains_checked,
            "warnings": r.warnings.iter().map(|w| json!({"code": w.code, "message": w.message})).collect::<Vec<_>>(),
        }),
    )?;
    Ok(())
}

fn inspect(path: &Path, printer: &Printer) -> anyhow::Result<()> {
    let (car, pkg) = load(path)?;
    let env = pkg.envelope();
    let root = pkg.car_blocks().map_err(|e| user(e.to_string()))?[0]
        .0
        .to_cid_string();
    let counts = pkg.type_counts();
    let dedup = pkg.dedup_stats();
    let mut human = format!(
        "root:        {root}\nversion:     {}\ncreatedAt:   {}\nupdatedAt:   {}\n",
        env.version, env.created_at, env.updated_at
    );
    if let Some(c) = &env.creator {
        human.push_str(&format!("creator:     {c}\n"));
    }
    if let Some(d) = &env.description {
        human.push_str(&format!("description: {d}\n"));
    }
    human.push_str(&format!(
        "bytes:       {}\nmanifest:    {} token(s)\n",
        car.len(),
        pkg.manifest().len()
    ));
    for (id, h) in pkg.manifest() {
        human.push_str(&format!("  {id} -> {h}\n"));
    }
    human.push_str(&format!("elements:    {}\n", pkg.pool().len()));
    for (t, n) in &counts {
        human.push_str(&format!("  0x{:02x} {:<22} {n}\n", t.id(), t.name()));
    }
    human.push_str(&format!(
        "dedup:       {} element(s) across tokens, {} unique, {} shared away\n",
        dedup.naive_elements,
        dedup.unique_elements,
        dedup.naive_elements.saturating_sub(dedup.unique_elements)
    ));
    printer.result(
        &human,
        &json!({
            "root": root,
            "bytes": car.len(),
            "envelope": {
                "version": env.version,
                "createdAt": Value::from_f64(env.created_at).to_json(),
                "updatedAt": Value::from_f64(env.updated_at).to_json(),
                "creator": env.creator,
                "description": env.description,
            },
            "manifest": pkg.manifest().iter().map(|(k, v)| (k.clone(), json!(v.to_hex()))).collect::<serde_json::Map<_, _>>(),
            "elements": pkg.pool().len(),
            "element_counts": counts.iter().map(|(t, n)| (t.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "dedup": {
                "naive_elements": dedup.naive_elements,
                "unique_elements": dedup.unique_elements,
                "shared_away": dedup.naive_elements.saturating_sub(dedup.unique_elements),
            },
        }),
    )?;
    Ok(())
}
