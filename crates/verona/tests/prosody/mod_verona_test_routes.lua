-- Test harness only (crates/verona/tests/federation_prosody.rs): Prosody 0.12 finds other
-- servers through DNS alone, and the test may not change /etc or run a DNS server, so this
-- module sends the domains named in `verona_test_routes` to fixed loopback addresses:
--   verona_test_routes = { ["verona.lit"] = { "127.0.0.1", 5269 } }
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";

local routes = module:get_option("verona_test_routes", {});
local original = service.new;

service.new = function (hostname, service_name, protocol, extra)
	local route = routes[hostname];
	if not route then
		return original(hostname, service_name, protocol, extra);
	end
	if service_name == "xmpp-server" then
		return basic.new(route[1], route[2], protocol, extra);
	end
	-- No direct TLS (XEP-0368) route: STARTTLS on the address above.
	return manual.new({}, protocol, extra);
end

function module.unload()
	service.new = original;
end
