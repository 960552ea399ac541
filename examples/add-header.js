// A plain-JavaScript script: tag every request that goes through sluice.
//   sluice dump -s examples/add-header.js
export default {
  name: "add-header",
  request(flow) {
    flow.request.headers.set("x-sluice", "seen");
  },
};
