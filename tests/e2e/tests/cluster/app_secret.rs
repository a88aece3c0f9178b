//! An authenticated TLS branch endpoint and its connection Secret in real
//! pods: an `ArgonProject` with a user whose password is in a Secret, an
//! `ArgonBranch` whose endpoint demands authentication and TLS (the
//! defaults) and names that user; the operator writes `<branch>-argon-app`,
//! and a client pod that mounts it connects as the README says (its `uri`,
//! its `ca.crt` as the trusted CA: SCRAM over TLS verified against the
//! Service's DNS name) and writes. pymongo, the Node.js driver and mongosh
//! do the same from outside the cluster, through `kubectl port-forward` to
//! the endpoint's Service, each resolving the Service's name to the forward
//! inside its own process, so TLS is still verified against that name and
//! the Secret's `ca.crt`. A client that does not trust the operator's CA, a
//! wrong password, a plain connection and one without credentials get
//! nothing.

use crate::support::{cluster, project_yaml, wait_branch_ready, wait_endpoint_ready};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

#[tokio::test]
async fn a_client_pod_logs_in_with_the_connection_secret() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-app-secret")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    let project = project_yaml("shop").replace(
        "spec:\n",
        "spec:\n  users:\n  - name: app\n    passwordSecretRef: {name: app-pw}\n    roles: [{role: readWrite, branch: feature}]\n",
    );
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: app-pw}}
stringData: {{password: "e2e-p@ss:w/rd"}}
---{project}---
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {{name: feature}}
spec:
  project: shop
  parent: main
  endpoint: {{enabled: true, user: app}}
"#
        ),
    )?;
    wait_branch_ready(cluster, ns, "feature").await?;
    wait_endpoint_ready(cluster, ns, "feature").await?;

    let secrets: Api<Secret> = Api::namespaced(cluster.client().await?, ns);
    let secret = secrets.get("feature-argon-app").await?;
    let uri = secret
        .data
        .as_ref()
        .and_then(|d| d.get("uri"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .ok_or_else(|| anyhow::anyhow!("feature-argon-app has no uri: {secret:?}"))?;
    assert!(uri.contains("tls=true"), "{uri}");
    let wrote = cluster
        .run_client_mounting(
            ns,
            "writer",
            "feature-argon-app",
            &[
                "write",
                "secret:/etc/argon-app",
                "shop",
                "orders",
                "e2e",
                "3",
            ],
        )
        .await?;
    assert_eq!(wrote["wrote"], 3, "{wrote}");

    // The other drivers against the same endpoint pod, as the README says
    // (the Secret's uri + tlsCAFile), through a port-forward.
    let ca = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .map(|v| v.0.clone())
        .ok_or_else(|| anyhow::anyhow!("feature-argon-app has no ca.crt"))?;
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca)?;
    let forward = cluster.port_forward(ns, "svc/abr-feature", 27017)?;
    let host = format!("abr-feature.{ns}.svc");
    let forwarded = uri.replace(
        &format!("{host}:27017"),
        &format!("{host}:{}", forward.port),
    );
    assert_ne!(forwarded, uri, "the uri names the Service: {uri}");
    let with_ca = format!(
        "{forwarded}&tlsCAFile={}&serverSelectionTimeoutMS=20000",
        ca_file.display()
    );
    // Resolve the Service's name to the forward, in the client's process.
    let preload = dir.path().join("resolve.js");
    std::fs::write(
        &preload,
        format!(
            r#"const dns = require('dns');
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {{
  if (typeof options === 'function') {{ callback = options; options = {{}}; }}
  if (host !== '{host}') return lookup.call(this, host, options, callback);
  if (options && options.all) return process.nextTick(callback, null, [{{address: '127.0.0.1', family: 4}}]);
  return process.nextTick(callback, null, '127.0.0.1', 4);
}};
"#
        ),
    )?;
    let node_options = format!("--require {}", preload.display());
    let pymongo = r#"
import socket, sys, pymongo
real = socket.getaddrinfo
def resolve(host, *args, **kwargs):
    return real("127.0.0.1" if host == sys.argv[2] else host, *args, **kwargs)
socket.getaddrinfo = resolve
client = pymongo.MongoClient(sys.argv[1])
client.shop.orders.insert_one({"by": "pymongo"})
print(client.shop.orders.count_documents({}))
"#;
    let out = argon_testkit::clients::run_python(pymongo, &[&with_ca, &host])?;
    assert_eq!(out.trim(), "4", "pymongo: {out}");
    let out = argon_testkit::clients::run_node(
        r#"
const { MongoClient } = require('mongodb');
(async () => {
  const client = new MongoClient(process.env.URI);
  const orders = client.db('shop').collection('orders');
  await orders.insertOne({ by: 'node' });
  console.log(await orders.countDocuments({}));
  await client.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#,
        &[
            ("URI", with_ca.as_str()),
            ("NODE_OPTIONS", node_options.as_str()),
        ],
    )?;
    assert_eq!(out.trim(), "5", "node: {out}");
    let out = argon_testkit::clients::run_mongosh_with_env(
        &with_ca,
        "db.getSiblingDB('shop').orders.insertOne({by: 'mongosh'}); print(db.getSiblingDB('shop').orders.countDocuments({}))",
        &[("NODE_OPTIONS", node_options.as_str())],
    )?;
    assert_eq!(out.trim(), "6", "mongosh: {out}");
    // Without the CA, and with a wrong password: refused, nothing written.
    let untrusted = argon_testkit::clients::run_python(
        pymongo,
        &[&format!("{forwarded}&serverSelectionTimeoutMS=5000"), &host],
    );
    let untrusted = format!("{untrusted:?}");
    assert!(
        untrusted.contains("CERTIFICATE_VERIFY_FAILED"),
        "pymongo without the CA: {untrusted}"
    );
    // mongodb://app:<password>@host…: the same user, another password.
    let (scheme, rest) = with_ca
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("not a URI: the Secret's uri"))?;
    let (userinfo, address) = rest
        .split_once('@')
        .ok_or_else(|| anyhow::anyhow!("the Secret's uri carries no credentials"))?;
    let user = userinfo.split(':').next().unwrap_or_default();
    let wrong = format!("{scheme}://{user}:not-the-password@{address}");
    let refused = argon_testkit::clients::run_python(pymongo, &[&wrong, &host]);
    let refused = format!("{refused:?}");
    assert!(
        refused.contains("Authentication failed"),
        "pymongo with a wrong password: {refused}"
    );
    let out = argon_testkit::clients::run_mongosh_with_env(
        &with_ca,
        "print(db.getSiblingDB('shop').orders.countDocuments({}))",
        &[("NODE_OPTIONS", node_options.as_str())],
    )?;
    assert_eq!(
        out.trim(),
        "6",
        "nothing written by the refused clients: {out}"
    );
    drop(forward);

    // The same URI without the operator's CA: the certificate is not trusted.
    let untrusted = cluster
        .run_client(ns, "untrusted", &["count", &uri, "shop", "orders", "e2e"])
        .await;
    let untrusted = format!("{untrusted:?}");
    assert!(
        untrusted.contains("certificate") || untrusted.contains("UnknownIssuer"),
        "a client without the CA reached the endpoint: {untrusted}"
    );

    // Plain TCP without credentials: the TLS endpoint gives it nothing.
    let anonymous = cluster
        .run_client(
            ns,
            "anonymous",
            &[
                "count",
                &connection_string("feature", ns),
                "shop",
                "orders",
                "e2e",
            ],
        )
        .await;
    assert!(
        anonymous.is_err(),
        "a plain, unauthenticated client read the endpoint: {anonymous:?}"
    );
    Ok(())
}
