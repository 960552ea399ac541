/**
 * aws/ recognition: requests captured from real SDKs (boto3 on the machine's python3, the AWS SDK
 * for JavaScript) talking to fake AWS origins, and hand-written requests for every shape.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, DeleteObjectCommand } from "@aws-sdk/client-s3";
import { HTTPFlow, Request, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { recognizeAwsRequest, awsInfoOf, forgetAwsInfo, keyPrefixOf, awsHostOf, parseSdkRequestHeader, sdkOf, retryModeOf, type AwsRequestInfo } from "../src/aws/index.js";
import { startFakeS3, startFakeDynamoDB, sluiceRequestOf, type FakeS3, type FakeDynamoDB } from "./support/fake-aws.js";
import { testOriginCa, originCaFile } from "./support/origins.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const AUTH_S3 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=0123abcd";

/** A request as a client would send it to `url`, with the Host header set from it. */
function request(method: string, url: string, headers: Record<string, string> = {}, body?: string): Request {
  const u = new URL(url);
  const scheme = u.protocol === "https:" ? "https" : "http";
  return new Request({
    method,
    scheme,
    host: u.hostname,
    port: u.port ? Number(u.port) : scheme === "https" ? 443 : 80,
    path: u.pathname + u.search,
    authority: u.host,
    headers: new Headers({ Host: u.host, ...headers }),
    content: body === undefined ? null : Buffer.from(body),
  });
}

function pick(info: AwsRequestInfo | null, ...fields: (keyof AwsRequestInfo)[]): Partial<AwsRequestInfo> | null {
  if (!info) return null;
  return Object.fromEntries(fields.map((f) => [f, info[f]]));
}

describe("requests captured from boto3", { skip: needsPython("boto3", "python3-boto3") }, () => {
  let s3: FakeS3;
  let dynamodb: FakeDynamoDB;
  let stdout = "";
  const bigSize = 6 * 1024 * 1024;
  before(async () => {
    const ca = testOriginCa();
    // HTTPS, because boto3 sends aws-chunked bodies with checksum trailers only over TLS.
    [s3, dynamodb] = await Promise.all([startFakeS3({ tls: { key: ca.leafKeyPem, cert: ca.leafCertFor("127.0.0.1") } }), startFakeDynamoDB()]);
    const script = `
import boto3, botocore.config, hashlib, io, sys
from boto3.s3.transfer import TransferConfig
s3_url, ca, ddb_url = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="eu-west-1", verify=ca)
s3.create_bucket(Bucket="photos", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
etag = s3.put_object(Bucket="photos", Key="2026/nov/ü + space.txt", Body=b"hello world")["ETag"]
print("etag-matches", etag == '"%s"' % hashlib.md5(b"hello world").hexdigest())
print("get", s3.get_object(Bucket="photos", Key="2026/nov/ü + space.txt")["Body"].read().decode())
print("head", s3.head_object(Bucket="photos", Key="2026/nov/ü + space.txt")["ContentLength"])
print("list", [o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="2026/")["Contents"]])
s3.upload_fileobj(io.BytesIO(b"0123456789abcdef" * (${bigSize} // 16)), "photos", "big/blob.bin",
                  Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=1))
print("deleted", [d["Key"] for d in s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "big/blob.bin"}]})["Deleted"]])
s3.delete_object(Bucket="photos", Key="2026/nov/ü + space.txt")
print("buckets", [b["Name"] for b in s3.list_buckets()["Buckets"]])
ddb = boto3.client("dynamodb", endpoint_url=ddb_url, region_name="eu-west-1")
ddb.create_table(TableName="users", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
ddb.put_item(TableName="users", Item={"id": {"S": "u1"}, "name": {"S": "Ada"}})
print("item", ddb.get_item(TableName="users", Key={"id": {"S": "u1"}})["Item"]["name"]["S"])
print("tables", ddb.list_tables()["TableNames"])
print("status", ddb.describe_table(TableName="users")["Table"]["TableStatus"])
`;
    const r = await run(await pythonWithBoto3(), ["-c", script, s3.url, originCaFile(), dynamodb.url], { env: awsEnv(), timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    stdout = r.stdout;
  });
  after(async () => {
    await Promise.all([s3?.close(), dynamodb?.close()]);
  });

  test("the fake origins answered boto3 like S3 and DynamoDB would", () => {
    assert.match(stdout, /^etag-matches True$/m);
    assert.match(stdout, /^get hello world$/m);
    assert.match(stdout, /^head 11$/m);
    assert.match(stdout, /^list \['2026\/nov\/ü \+ space.txt'\]$/m);
    assert.match(stdout, /^deleted \['big\/blob.bin'\]$/m);
    assert.match(stdout, /^buckets \['photos'\]$/m);
    assert.match(stdout, /^item Ada$/m);
    assert.match(stdout, /^tables \['users'\]$/m);
    assert.match(stdout, /^status ACTIVE$/m);
  });

  test("uploads arrived aws-chunked behind Expect: 100-continue and were decoded", () => {
    const puts = s3.requests.filter((r) => r.method === "PUT" && r.path !== "/photos");
    assert.ok(puts.length >= 3, "PutObject and two UploadPart requests");
    for (const put of puts) {
      assert.equal(put.headers.expect, "100-continue");
      assert.match(String(put.headers["x-amz-content-sha256"]), /^STREAMING-/);
      assert.match(String(put.headers["content-encoding"]), /aws-chunked/);
    }
  });

  test("S3 calls: service, region, operation, bucket, key (URL-decoded), SDK, retry mode, attempt", () => {
    const infos = s3.requests.map((r) => recognizeAwsRequest(sluiceRequestOf(r, s3)));
    const key = "2026/nov/ü + space.txt";
    assert.deepEqual(
      infos.map((i) => [i?.operation, i?.bucket, i?.key]),
      [
        ["CreateBucket", "photos", null],
        ["PutObject", "photos", key],
        ["GetObject", "photos", key],
        ["HeadObject", "photos", key],
        ["ListObjectsV2", "photos", null],
        ["CreateMultipartUpload", "photos", "big/blob.bin"],
        ["UploadPart", "photos", "big/blob.bin"],
        ["UploadPart", "photos", "big/blob.bin"],
        ["CompleteMultipartUpload", "photos", "big/blob.bin"],
        ["DeleteObjects", "photos", null],
        ["DeleteObject", "photos", key],
        ["ListBuckets", null, null],
      ],
    );
    const invocationIds = new Set<string>();
    for (const info of infos) {
      assert.equal(info!.service, "s3");
      assert.equal(info!.region, "eu-west-1");
      assert.equal(info!.attempt, 1);
      assert.match(info!.sdk!, /^Boto3\/\d+\.\d+/);
      assert.equal(info!.retryMode, "legacy");
      assert.match(info!.invocationId!, UUID);
      invocationIds.add(info!.invocationId!);
    }
    assert.equal(invocationIds.size, infos.length, "one invocation id per SDK call");
  });

  test("DynamoDB calls: operation from X-Amz-Target, JSON 1.0", () => {
    const infos = dynamodb.requests.map((r) => recognizeAwsRequest(sluiceRequestOf(r, dynamodb)));
    assert.deepEqual(infos.map((i) => i?.operation), ["CreateTable", "PutItem", "GetItem", "ListTables", "DescribeTable"]);
    for (const info of infos) {
      assert.deepEqual(pick(info, "service", "region", "bucket", "key", "attempt", "protocol", "jsonVersion"), {
        service: "dynamodb", region: "eu-west-1", bucket: null, key: null, attempt: 1, protocol: "json", jsonVersion: "1.0",
      });
    }
    assert.deepEqual(dynamodb.item("users", { id: { S: "u1" } }), { id: { S: "u1" }, name: { S: "Ada" } });
  });
});

describe("requests captured from the AWS SDK for JavaScript", () => {
  let s3: FakeS3;
  before(async () => {
    s3 = await startFakeS3({ buckets: [] });
  });
  after(async () => {
    await s3?.close();
  });

  test("CreateBucket, PutObject (plain and aws-chunked), GetObject, ListObjectsV2, DeleteObject", async () => {
    const client = new S3Client({ region: "us-west-2", endpoint: s3.url, forcePathStyle: true, credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "x" } });
    const body = "a".repeat(70_000);
    try {
      await client.send(new CreateBucketCommand({ Bucket: "js-bucket" }));
      const put = await client.send(new PutObjectCommand({ Bucket: "js-bucket", Key: "logs/app/1.txt", Body: body }));
      assert.equal(put.ETag, `"${createHash("md5").update(body).digest("hex")}"`);
      // A stream body goes out aws-chunked with a CRC32 trailer.
      const streamed = Buffer.concat([Buffer.alloc(70_000, "x"), Buffer.alloc(5_000, "y")]);
      await client.send(new PutObjectCommand({ Bucket: "js-bucket", Key: "logs/streamed.bin", Body: Readable.from([streamed.subarray(0, 70_000), streamed.subarray(70_000)]), ContentLength: streamed.length }));
      assert.deepEqual(s3.object("js-bucket", "logs/streamed.bin"), streamed);
      const got = await client.send(new GetObjectCommand({ Bucket: "js-bucket", Key: "logs/app/1.txt" }));
      assert.equal(await got.Body!.transformToString(), body);
      const list = await client.send(new ListObjectsV2Command({ Bucket: "js-bucket", Prefix: "logs/", Delimiter: "/" }));
      assert.deepEqual(list.CommonPrefixes?.map((p) => p.Prefix), ["logs/app/"]);
      await client.send(new DeleteObjectCommand({ Bucket: "js-bucket", Key: "logs/app/1.txt" }));
    } finally {
      client.destroy();
    }
    const infos = s3.requests.map((r) => recognizeAwsRequest(sluiceRequestOf(r, s3)));
    assert.deepEqual(
      infos.map((i) => [i?.operation, i?.bucket, i?.key]),
      [
        ["CreateBucket", "js-bucket", null],
        ["PutObject", "js-bucket", "logs/app/1.txt"],
        ["PutObject", "js-bucket", "logs/streamed.bin"],
        ["GetObject", "js-bucket", "logs/app/1.txt"],
        ["ListObjectsV2", "js-bucket", null],
        ["DeleteObject", "js-bucket", "logs/app/1.txt"],
      ],
    );
    assert.equal(s3.requests[2]!.headers["x-amz-content-sha256"], "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    assert.equal(s3.requests[2]!.headers["content-encoding"], "aws-chunked");
    for (const info of infos) {
      assert.equal(info!.service, "s3");
      assert.equal(info!.region, "us-west-2");
      assert.equal(info!.maxAttempts, 3);
      assert.equal(info!.attempt, 1);
      assert.match(info!.sdk!, /^aws-sdk-js\/3\./);
      assert.match(info!.invocationId!, UUID);
    }
    assert.equal(keyPrefixOf(infos[1]!), "js-bucket/logs/");
    assert.equal(keyPrefixOf(infos[1]!, 2), "js-bucket/logs/app/");
  });

  test("virtual-hosted requests: the fake S3 and recognition both take the bucket from the Host", async () => {
    const host = "js-bucket.s3.us-west-2.amazonaws.com";
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: s3.port, method: "PUT", path: "/virtual/key.txt", headers: { Host: host, "Content-Length": "2" } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end("hi");
    });
    assert.equal(status, 200);
    assert.deepEqual(s3.object("js-bucket", "virtual/key.txt"), Buffer.from("hi"));
    const seen = s3.requests[s3.requests.length - 1]!;
    assert.deepEqual(pick(recognizeAwsRequest(sluiceRequestOf(seen, s3)), "service", "region", "operation", "bucket", "key"), {
      service: "s3", region: "us-west-2", operation: "PutObject", bucket: "js-bucket", key: "virtual/key.txt",
    });
  });
});

describe("S3 REST operations from method, path and query", () => {
  const path = "https://s3.eu-west-1.amazonaws.com";
  const virtual = "https://my.bucket.s3.eu-west-1.amazonaws.com";
  const cases: [method: string, url: string, operation: string, bucket: string | null, key: string | null, headers?: Record<string, string>][] = [
    ["GET", `${path}/`, "ListBuckets", null, null],
    ["PUT", `${path}/b`, "CreateBucket", "b", null],
    ["DELETE", `${path}/b`, "DeleteBucket", "b", null],
    ["HEAD", `${path}/b`, "HeadBucket", "b", null],
    ["GET", `${path}/b?location`, "GetBucketLocation", "b", null],
    ["GET", `${path}/b?list-type=2&prefix=a%2F&encoding-type=url`, "ListObjectsV2", "b", null],
    ["GET", `${path}/b`, "ListObjects", "b", null],
    ["GET", `${path}/b?prefix=x&marker=y`, "ListObjects", "b", null],
    ["GET", `${path}/b?uploads`, "ListMultipartUploads", "b", null],
    ["GET", `${path}/b?versions`, "ListObjectVersions", "b", null],
    ["POST", `${path}/b?delete`, "DeleteObjects", "b", null],
    ["GET", `${path}/b?policy`, "GetBucketPolicy", "b", null],
    ["PUT", `${path}/b?policy`, "PutBucketPolicy", "b", null],
    ["DELETE", `${path}/b?policy`, "DeleteBucketPolicy", "b", null],
    ["GET", `${path}/b?versioning`, "GetBucketVersioning", "b", null],
    ["PUT", `${path}/b?versioning`, "PutBucketVersioning", "b", null],
    ["GET", `${path}/b?lifecycle`, "GetBucketLifecycleConfiguration", "b", null],
    ["DELETE", `${path}/b?lifecycle`, "DeleteBucketLifecycle", "b", null],
    ["GET", `${path}/b?cors`, "GetBucketCors", "b", null],
    ["PUT", `${path}/b?tagging`, "PutBucketTagging", "b", null],
    ["GET", `${path}/b?encryption`, "GetBucketEncryption", "b", null],
    ["GET", `${path}/b?acl`, "GetBucketAcl", "b", null],
    ["GET", `${path}/b?notification`, "GetBucketNotificationConfiguration", "b", null],
    ["GET", `${path}/b?publicAccessBlock`, "GetPublicAccessBlock", "b", null],
    ["GET", `${path}/b?analytics`, "ListBucketAnalyticsConfigurations", "b", null],
    ["GET", `${path}/b?analytics&id=a1`, "GetBucketAnalyticsConfiguration", "b", null],
    ["PUT", `${path}/b?metrics&id=m1`, "PutBucketMetricsConfiguration", "b", null],
    ["DELETE", `${path}/b?intelligent-tiering&id=t`, "DeleteBucketIntelligentTieringConfiguration", "b", null],
    ["GET", `${path}/b/k`, "GetObject", "b", "k"],
    ["HEAD", `${path}/b/k`, "HeadObject", "b", "k"],
    ["PUT", `${path}/b/k`, "PutObject", "b", "k"],
    ["DELETE", `${path}/b/k`, "DeleteObject", "b", "k"],
    ["GET", `${path}/b/k?versionId=3`, "GetObject", "b", "k"],
    ["PUT", `${path}/b/dst`, "CopyObject", "b", "dst", { "x-amz-copy-source": "/b/src" }],
    ["POST", `${path}/b/k?uploads`, "CreateMultipartUpload", "b", "k"],
    ["PUT", `${path}/b/k?partNumber=2&uploadId=abc`, "UploadPart", "b", "k"],
    ["PUT", `${path}/b/k?partNumber=2&uploadId=abc`, "UploadPartCopy", "b", "k", { "x-amz-copy-source": "/b/src" }],
    ["POST", `${path}/b/k?uploadId=abc`, "CompleteMultipartUpload", "b", "k"],
    ["DELETE", `${path}/b/k?uploadId=abc`, "AbortMultipartUpload", "b", "k"],
    ["GET", `${path}/b/k?uploadId=abc`, "ListParts", "b", "k"],
    ["GET", `${path}/b/k?tagging`, "GetObjectTagging", "b", "k"],
    ["PUT", `${path}/b/k?acl`, "PutObjectAcl", "b", "k"],
    ["DELETE", `${path}/b/k?tagging`, "DeleteObjectTagging", "b", "k"],
    ["POST", `${path}/b/k?restore`, "RestoreObject", "b", "k"],
    ["GET", `${path}/b/k?attributes`, "GetObjectAttributes", "b", "k"],
    ["GET", `${path}/b/dir/a%20b%2Bc%C3%BC.txt`, "GetObject", "b", "dir/a b+cü.txt"],
    ["GET", `${path}/b/k?x-id=GetObject`, "GetObject", "b", "k"],
    // Virtual-hosted: the bucket (which may contain dots) is in the host name.
    ["GET", `${virtual}/`, "ListObjects", "my.bucket", null],
    ["GET", `${virtual}/?list-type=2`, "ListObjectsV2", "my.bucket", null],
    ["PUT", `${virtual}/`, "CreateBucket", "my.bucket", null],
    ["HEAD", `${virtual}/`, "HeadBucket", "my.bucket", null],
    ["GET", `${virtual}/dir/key.txt`, "GetObject", "my.bucket", "dir/key.txt"],
    ["POST", `${virtual}/?delete`, "DeleteObjects", "my.bucket", null],
    ["PUT", `${virtual}/big?partNumber=1&uploadId=u`, "UploadPart", "my.bucket", "big"],
    ["GET", "https://logs.s3.amazonaws.com/a/b", "GetObject", "logs", "a/b"],
    ["GET", "https://logs.s3-eu-west-1.amazonaws.com/a", "GetObject", "logs", "a"],
    ["GET", "https://s3-logs.s3.dualstack.us-west-2.amazonaws.com/a", "GetObject", "s3-logs", "a"],
  ];
  for (const [method, url, operation, bucket, key, headers] of cases) {
    test(`${method} ${url.replace(/^https:\/\//, "")}${headers ? " + copy source" : ""} → ${operation}`, () => {
      const info = recognizeAwsRequest(request(method, url, { Authorization: AUTH_S3, ...headers }));
      assert.deepEqual(pick(info, "service", "operation", "bucket", "key"), { service: "s3", operation, bucket, key });
    });
  }

  test("a presigned URL: service and region from X-Amz-Credential", () => {
    const url = "https://photos.s3.amazonaws.com/cat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261124%2Fap-southeast-2%2Fs3%2Faws4_request&X-Amz-Date=20261124T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abc";
    assert.deepEqual(pick(recognizeAwsRequest(request("GET", url)), "service", "region", "operation", "bucket", "key"), {
      service: "s3", region: "ap-southeast-2", operation: "GetObject", bucket: "photos", key: "cat.jpg",
    });
  });

  test("an unsigned request to an S3 host is still recognized from the host", () => {
    assert.deepEqual(pick(recognizeAwsRequest(request("GET", "https://public-data.s3.us-east-2.amazonaws.com/index.html")), "service", "region", "operation", "bucket", "key"), {
      service: "s3", region: "us-east-2", operation: "GetObject", bucket: "public-data", key: "index.html",
    });
  });
});

describe("JSON, query, EC2 and Lambda requests", () => {
  const auth = (region: string, service: string) => `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/${region}/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab`;
  const form = { "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" };

  test("X-Amz-Target names the operation (JSON protocols)", () => {
    const info = recognizeAwsRequest(request("POST", "https://dynamodb.eu-central-1.amazonaws.com/", { Authorization: auth("eu-central-1", "dynamodb"), "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem", "Content-Type": "application/x-amz-json-1.0" }, "{}"));
    assert.deepEqual(pick(info, "service", "region", "operation", "protocol", "jsonVersion"), { service: "dynamodb", region: "eu-central-1", operation: "BatchWriteItem", protocol: "json", jsonVersion: "1.0" });
    const kinesis = recognizeAwsRequest(request("POST", "https://kinesis.us-east-1.amazonaws.com/", { Authorization: auth("us-east-1", "kinesis"), "X-Amz-Target": "Kinesis_20131202.PutRecords", "Content-Type": "application/x-amz-json-1.1" }, "{}"));
    assert.deepEqual(pick(kinesis, "service", "operation", "jsonVersion"), { service: "kinesis", operation: "PutRecords", jsonVersion: "1.1" });
  });

  test("Action= in a form body (query protocol): STS, IAM, SNS", () => {
    const sts = recognizeAwsRequest(request("POST", "https://sts.amazonaws.com/", { Authorization: auth("us-east-1", "sts"), ...form }, "Action=GetCallerIdentity&Version=2011-06-15"));
    assert.deepEqual(pick(sts, "service", "region", "operation", "protocol"), { service: "sts", region: "us-east-1", operation: "GetCallerIdentity", protocol: "query" });
    const iam = recognizeAwsRequest(request("POST", "https://iam.amazonaws.com/", { Authorization: auth("us-east-1", "iam"), ...form }, "Version=2010-05-08&Action=ListUsers&MaxItems=10"));
    assert.equal(iam?.operation, "ListUsers");
    const sns = recognizeAwsRequest(request("POST", "https://sns.ap-south-1.amazonaws.com/", { Authorization: auth("ap-south-1", "sns"), ...form }, "Action=Publish&Message=Action%3DNotThis&TopicArn=arn"));
    assert.equal(sns?.operation, "Publish");
  });

  test("Action= in the query string: EC2 GET, and the host alone gives service and region", () => {
    const ec2 = recognizeAwsRequest(request("GET", "https://ec2.ap-northeast-1.amazonaws.com/?Action=DescribeInstances&Version=2016-11-15", { "X-Amz-Date": "20261124T000000Z" }));
    assert.deepEqual(pick(ec2, "service", "region", "operation", "protocol"), { service: "ec2", region: "ap-northeast-1", operation: "DescribeInstances", protocol: "ec2" });
    const post = recognizeAwsRequest(request("POST", "https://ec2.us-east-1.amazonaws.com/", { Authorization: auth("us-east-1", "ec2"), ...form }, "Action=RunInstances&Version=2016-11-15&MinCount=1"));
    assert.deepEqual(pick(post, "operation", "protocol"), { operation: "RunInstances", protocol: "ec2" });
  });

  const lambdaCases: [method: string, path: string, operation: string][] = [
    ["POST", "/2015-03-31/functions/my-fn/invocations", "Invoke"],
    ["POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Amy-fn/invocations?Qualifier=live", "Invoke"],
    ["POST", "/2014-11-13/functions/my-fn/invoke-async/", "InvokeAsync"],
    ["GET", "/2015-03-31/functions/", "ListFunctions"],
    ["POST", "/2015-03-31/functions", "CreateFunction"],
    ["GET", "/2015-03-31/functions/my-fn", "GetFunction"],
    ["DELETE", "/2015-03-31/functions/my-fn", "DeleteFunction"],
    ["GET", "/2015-03-31/functions/my-fn/configuration", "GetFunctionConfiguration"],
    ["PUT", "/2015-03-31/functions/my-fn/configuration", "UpdateFunctionConfiguration"],
    ["PUT", "/2015-03-31/functions/my-fn/code", "UpdateFunctionCode"],
    ["POST", "/2015-03-31/functions/my-fn/versions", "PublishVersion"],
    ["GET", "/2015-03-31/functions/my-fn/aliases", "ListAliases"],
    ["GET", "/2015-03-31/functions/my-fn/aliases/live", "GetAlias"],
    ["PUT", "/2017-10-31/functions/my-fn/concurrency", "PutFunctionConcurrency"],
    ["GET", "/2015-03-31/event-source-mappings/", "ListEventSourceMappings"],
    ["GET", "/2018-10-31/layers", "ListLayers"],
    ["GET", "/2016-08-19/account-settings/", "GetAccountSettings"],
  ];
  for (const [method, path, operation] of lambdaCases) {
    test(`Lambda ${method} ${path} → ${operation}`, () => {
      const info = recognizeAwsRequest(request(method, `https://lambda.eu-west-1.amazonaws.com${path}`, { Authorization: auth("eu-west-1", "lambda") }));
      assert.deepEqual(pick(info, "service", "region", "operation"), { service: "lambda", region: "eu-west-1", operation });
    });
  }

  test("SigV4a: service from the scope, region from X-Amz-Region-Set", () => {
    const info = recognizeAwsRequest(request("GET", "https://mrap.accesspoint.s3-global.amazonaws.com/k", {
      Authorization: "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20261124/s3/aws4_request, SignedHeaders=host, Signature=ab",
      "X-Amz-Region-Set": "eu-west-3",
    }));
    assert.deepEqual(pick(info, "service", "region"), { service: "s3", region: "eu-west-3" });
  });

  test("the credential scope beats the host (a fake or mapped endpoint)", () => {
    const info = recognizeAwsRequest(request("POST", "http://127.0.0.1:4566/", { Authorization: auth("sa-east-1", "sqs"), "X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0" }, "{}"));
    assert.deepEqual(pick(info, "service", "region", "operation", "bucket"), { service: "sqs", region: "sa-east-1", operation: "SendMessage", bucket: null });
  });

  test("not AWS: plain traffic, and CloudFront's x-amz-cf-id alone", () => {
    assert.equal(recognizeAwsRequest(request("GET", "https://example.com/a?b=c", { "User-Agent": "curl/8.5.0" })), null);
    assert.equal(recognizeAwsRequest(request("GET", "https://origin.example.com/", { "X-Amz-Cf-Id": "abc==" })), null);
    assert.equal(recognizeAwsRequest(request("GET", "https://example.com/", { Authorization: "Bearer xyz" })), null);
  });

  test("an SDK header alone makes a request AWS, with what can be told", () => {
    const info = recognizeAwsRequest(request("GET", "http://localhost:9000/x", { "amz-sdk-invocation-id": "6c1b8a5e-0000-4000-8000-000000000001", "amz-sdk-request": "attempt=3; max=3" }));
    assert.deepEqual(info, {
      service: null, region: null, operation: null, bucket: null, key: null,
      invocationId: "6c1b8a5e-0000-4000-8000-000000000001", attempt: 3, maxAttempts: 3, sdk: null, retryMode: null, protocol: null, jsonVersion: null,
    });
  });
});

describe("AWS host names", () => {
  const cases: [host: string, service: string | null, region: string | null, bucket: string | null][] = [
    ["s3.eu-west-1.amazonaws.com", "s3", "eu-west-1", null],
    ["s3.amazonaws.com", "s3", "us-east-1", null],
    ["bucket.s3.amazonaws.com", "s3", "us-east-1", "bucket"],
    ["s3-eu-west-1.amazonaws.com", "s3", "eu-west-1", null],
    ["bucket.s3-eu-west-1.amazonaws.com", "s3", "eu-west-1", "bucket"],
    ["s3-external-1.amazonaws.com", "s3", "us-east-1", null],
    ["a.b.s3.dualstack.us-west-2.amazonaws.com", "s3", "us-west-2", "a.b"],
    ["site.s3-website-us-east-1.amazonaws.com", "s3", "us-east-1", "site"],
    ["site.s3-website.eu-central-1.amazonaws.com", "s3", "eu-central-1", "site"],
    ["b.s3.cn-north-1.amazonaws.com.cn", "s3", "cn-north-1", "b"],
    ["dynamodb.us-east-1.amazonaws.com", "dynamodb", "us-east-1", null],
    ["streams.dynamodb.eu-west-1.amazonaws.com", "dynamodb", "eu-west-1", null],
    ["dynamodb-fips.us-gov-west-1.amazonaws.com", "dynamodb", "us-gov-west-1", null],
    ["ec2.ap-southeast-2.amazonaws.com", "ec2", "ap-southeast-2", null],
    ["ec2.us-east-1.api.aws", "ec2", "us-east-1", null],
    ["sts.amazonaws.com", "sts", "us-east-1", null],
    ["sts.eu-north-1.amazonaws.com", "sts", "eu-north-1", null],
    ["iam.amazonaws.com", "iam", "us-east-1", null],
    ["iam.cn-north-1.amazonaws.com.cn", "iam", "cn-north-1", null],
    ["email.eu-west-1.amazonaws.com", "ses", "eu-west-1", null],
    ["runtime.sagemaker.us-east-1.amazonaws.com", "sagemaker", "us-east-1", null],
    ["api.ecr.eu-west-1.amazonaws.com", "ecr", "eu-west-1", null],
    ["abc123.execute-api.us-east-1.amazonaws.com", "execute-api", "us-east-1", null],
    ["bedrock-runtime.us-west-2.amazonaws.com", "bedrock", "us-west-2", null],
    ["search-logs-abc123.eu-west-1.es.amazonaws.com", "es", "eu-west-1", null],
  ];
  for (const [host, service, region, bucket] of cases) {
    test(host, () => {
      const h = awsHostOf(host);
      assert.deepEqual(h && { service: h.service, region: h.region, bucket: h.bucket }, { service, region, bucket });
    });
  }
  test("not AWS hosts", () => {
    assert.equal(awsHostOf("example.com"), null);
    assert.equal(awsHostOf("amazonaws.com"), null);
    assert.equal(awsHostOf("amazonaws.com.evil.example"), null);
  });
  test("S3 Control: the account id in the host is not a bucket, nor is the path", () => {
    const info = recognizeAwsRequest(request("GET", "https://123456789012.s3-control.eu-west-1.amazonaws.com/v20180820/accesspoint", { Authorization: AUTH_S3 }));
    assert.deepEqual(pick(info, "service", "region", "bucket", "key", "operation"), { service: "s3", region: "eu-west-1", bucket: null, key: null, operation: null });
  });
});

describe("SDK headers", () => {
  test("amz-sdk-request: attempt, max and ttl in any order and spacing", () => {
    assert.deepEqual(parseSdkRequestHeader("attempt=1"), { attempt: 1, maxAttempts: null });
    assert.deepEqual(parseSdkRequestHeader("ttl=20261124T220448Z; attempt=2; max=5"), { attempt: 2, maxAttempts: 5 });
    assert.deepEqual(parseSdkRequestHeader("max=3;attempt=3"), { attempt: 3, maxAttempts: 3 });
    assert.deepEqual(parseSdkRequestHeader(" attempt = 4 ;  max = 10 "), { attempt: 4, maxAttempts: 10 });
    assert.deepEqual(parseSdkRequestHeader("garbage"), { attempt: null, maxAttempts: null });
  });

  const agents: [ua: string, sdk: string | null, mode: string | null][] = [
    ["Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/N,b cfg/retry-mode#legacy Botocore/1.43.11", "Boto3/1.43.11", "legacy"],
    ["Boto3/1.26.27 Python/3.11.2 Linux/6.1.0 Botocore/1.29.27", "Boto3/1.26.27", null],
    ["aws-cli/2.9.19 Python/3.11.2 Linux/6.1.0 source/x86_64.debian.12 prompt/off command/s3api.list-buckets", "aws-cli/2.9.19", null],
    ["aws-cli/1.45.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18 cfg/retry-mode#standard botocore/1.43.11", "aws-cli/1.45.11", "standard"],
    ["aws-sdk-js/3.1175.0 ua/2.1 os/linux#6.18 lang/js md/nodejs#20.20.2 api/s3#3.1175.0 m/E,N cfg/retry-mode#adaptive", "aws-sdk-js/3.1175.0", "adaptive"],
    ["aws-sdk-java/2.25.1 Linux/6.1 OpenJDK_64-Bit_Server_VM/17 Java/17 vendor/Eclipse_Adoptium io/sync http/Apache cfg/retry-mode/standard", "aws-sdk-java/2.25.1", "standard"],
    ["Botocore/1.34.0 ua/2.1 os/linux#6.1 lang/python#3.12", "Botocore/1.34.0", null],
    ["my-tool/2.0 Boto3/1.43.11 Botocore/1.43.11", "Boto3/1.43.11", null],
    ["curl/8.5.0", null, null],
  ];
  for (const [ua, sdk, mode] of agents) {
    test(`User-Agent ${ua.slice(0, 40)}… → ${sdk}, ${mode}`, () => {
      assert.equal(sdkOf(ua), sdk);
      assert.equal(retryModeOf(ua), mode);
    });
  }
});

describe("key prefixes and the per-flow cache", () => {
  const info = (bucket: string | null, key: string | null): AwsRequestInfo => ({
    service: "s3", region: "eu-west-1", operation: "GetObject", bucket, key, invocationId: null, attempt: null, maxAttempts: null, sdk: null, retryMode: null,
  });

  test("keyPrefixOf: bucket plus the first `depth` directories of the key", () => {
    assert.equal(keyPrefixOf(info("b", "logs/2026/11/x.gz")), "b/logs/");
    assert.equal(keyPrefixOf(info("b", "logs/2026/11/x.gz"), 2), "b/logs/2026/");
    assert.equal(keyPrefixOf(info("b", "logs/2026/11/x.gz"), 9), "b/logs/2026/11/");
    assert.equal(keyPrefixOf(info("b", "logs/2026/11/x.gz"), 0), "b/");
    assert.equal(keyPrefixOf(info("b", "top-level.txt")), "b/");
    assert.equal(keyPrefixOf(info("b", null)), "b/");
    assert.equal(keyPrefixOf(info(null, null)), null);
  });

  test("awsInfoOf answers from its cache until forgetAwsInfo", () => {
    const flow = new HTTPFlow(newClientConnection(), newServerConnection(), request("GET", "https://s3.eu-west-1.amazonaws.com/b/k", { Authorization: AUTH_S3 }));
    const first = awsInfoOf(flow);
    assert.equal(first?.operation, "GetObject");
    assert.equal(awsInfoOf(flow), first, "same object: recognized once");
    flow.request.method = "DELETE";
    assert.equal(awsInfoOf(flow)?.operation, "GetObject", "the first answer sticks");
    forgetAwsInfo(flow);
    assert.equal(awsInfoOf(flow)?.operation, "DeleteObject");
    const plain = new HTTPFlow(newClientConnection(), newServerConnection(), request("GET", "https://example.com/"));
    assert.equal(awsInfoOf(plain), null);
    assert.equal(awsInfoOf(plain), null);
  });

  test("awsInfoOf recognised before the body arrived learns a query-protocol operation from the form body", () => {
    // map-remote recognises a call from its headers, then rewrites the host; EC2 names the
    // operation only in the POSTed form.
    const auth = AUTH_S3.replace("/s3/", "/ec2/");
    const flow = new HTTPFlow(newClientConnection(), newServerConnection(), request("POST", "https://ec2.eu-west-1.amazonaws.com/", { Authorization: auth, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" }));
    assert.deepEqual(pick(awsInfoOf(flow), "service", "operation"), { service: "ec2", operation: null });
    flow.request.host = "127.0.0.1";
    flow.request.content = Buffer.from("Action=DescribeSnapshots&Version=2016-11-15");
    assert.deepEqual(pick(awsInfoOf(flow), "service", "region", "operation", "protocol"), { service: "ec2", region: "eu-west-1", operation: "DescribeSnapshots", protocol: "ec2" });
  });
});
