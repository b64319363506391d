// Stand-in for deno_net's TLS helper, which deno_fetch loads for Deno.createHttpClient: Outpost has no custom HTTP clients.
(function () {
const { primordials } = __bootstrap;
const { TypeError } = primordials;

function loadTlsKeyPair(api) {
  throw new TypeError(`${api} is not available in Outpost`);
}

return { loadTlsKeyPair };
})();
