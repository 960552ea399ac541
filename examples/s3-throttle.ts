/**
 * The classic: every S3 response in eu-west-1 becomes 429 Too Many Requests, body kept.
 *   sluice dump -s examples/s3-throttle.ts
 * The filter is compiled once, in load; `ctx.filter` takes any sluice filter expression.
 */
import type { Addon, AddonContext, FlowPredicate, HTTPFlow } from "sluice";

let isS3Response: FlowPredicate;

const addon: Addon = {
  name: "s3-throttle",
  load(ctx: AddonContext) {
    isS3Response = ctx.filter("~d s3.eu-west-1.amazonaws.com & ~s");
  },
  response(flow: HTTPFlow) {
    if (!isS3Response(flow)) return;
    flow.response!.statusCode = 429;
    flow.response!.reason = "Too Many Requests";
  },
};

export default addon;
