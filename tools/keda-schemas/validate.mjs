// Validates KEDA objects (JSON array on stdin) with the validators that @kubernetes-models/keda generates
// from KEDA's API types, and refuses fields those types do not define, as a cluster with strict field
// validation would. Prints one JSON result per object: {"kind", "name", "errors": [..]}.
//
// The generated validators accept unknown fields, so every object is wrapped in a Proxy that records the
// properties a validator reads. A validator reads each property its schema defines and enumerates the keys
// of maps (labels, trigger metadata); any key of a non-enumerated object that it never read is unknown.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const schemas = join(here, "node_modules", "@kubernetes-models", "keda", "_schemas");
const validators = {
  ScaledObject: "ComGithubKedacoreKedaV2ApisKedaV1alpha1ScaledObject.js",
  TriggerAuthentication: "ComGithubKedacoreKedaV2ApisKedaV1alpha1TriggerAuthentication.js",
  ClusterTriggerAuthentication: "ComGithubKedacoreKedaV2ApisKedaV1alpha1ClusterTriggerAuthentication.js",
  ScaledJob: "ComGithubKedacoreKedaV2ApisKedaV1alpha1ScaledJob.js",
};

function track(value, path, objects) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item, i) => track(item, `${path}/${i}`, objects));
  const copy = {};
  for (const [key, item] of Object.entries(value)) copy[key] = track(item, `${path}/${key}`, objects);
  const record = { path, keys: Object.keys(value), read: new Set(), enumerated: false };
  objects.push(record);
  return new Proxy(copy, {
    get(target, prop, receiver) {
      if (typeof prop === "string") record.read.add(prop);
      return Reflect.get(target, prop, receiver);
    },
    has(target, prop) {
      if (typeof prop === "string") record.read.add(prop);
      return Reflect.has(target, prop);
    },
    ownKeys(target) {
      record.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

async function validateOne(doc) {
  const name = doc?.metadata?.name ?? "<unnamed>";
  const kind = doc?.kind;
  if (doc?.apiVersion !== "keda.sh/v1alpha1" || !(kind in validators)) {
    return { kind, name, errors: [`not a KEDA keda.sh/v1alpha1 kind this tool knows: ${doc?.apiVersion} ${kind}`] };
  }
  const { validate } = await import(pathToFileURL(join(schemas, validators[kind])).href);
  const objects = [];
  const errors = [];
  if (!validate(track(doc, "", objects))) {
    for (const e of validate.errors) errors.push(`${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`);
  }
  for (const record of objects) {
    if (record.enumerated) continue;
    for (const key of record.keys) {
      if (!record.read.has(key)) errors.push(`${record.path || "/"}: unknown field "${key}"`);
    }
  }
  return { kind, name, errors };
}

const docs = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const doc of docs) results.push(await validateOne(doc));
process.stdout.write(JSON.stringify(results) + "\n");
