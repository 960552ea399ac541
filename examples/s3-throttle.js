// The classic throttling addon, as written for mitmproxy, in JavaScript with mitmproxy's names:
// every S3 response in eu-west-1 becomes 429 Too Many Requests (body and headers kept), so you
// can watch what your SDK does about it.
//   sluice dump -s examples/s3-throttle.js -w capture.mitm --set metrics_port=9090
//   sluice report capture.mitm
// mitmproxy's original:
//   def response(flow):
//       if flowfilter.match("~d s3.eu-west-1.amazonaws.com & ~s", flow):
//           flow.response.status_code = 429
//           flow.response.reason = "Too Many Requests"
// Scripts run before sluice's retry tracking, metrics and saving, so the 429s are what the
// capture, `sluice report` and the metrics record: the same as the SDK saw.
import { compileFilter } from "sluice";

const s3Response = compileFilter("~d s3.eu-west-1.amazonaws.com & ~s");

export default {
  name: "s3-throttle",
  response(flow) {
    if (s3Response(flow)) {
      flow.response.status_code = 429;
      flow.response.reason = "Too Many Requests";
    }
  },
};
