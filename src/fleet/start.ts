/**
 * Joining the fleet at start: reads the fleet options, opens the process's one Redis connection
 * (fleet/connection.ts) and hands back the shared state features use instead of this process's
 * memory. Called by the master after options are set and before addons configure, so every rule
 * is built on the shared state from its first request.
 */
import type { Logger } from "../core/addons.js";
import { checkFleetName, instanceLabel, type FleetOptions } from "./options.js";
import { closeFleetConnection, openFleetConnection, parseRedisUrl, type FleetConnection, type FleetFallback } from "./connection.js";
import { RedisSharedState } from "./redis-state.js";

/** How long start waits for Redis before going on with the fallback (and connecting in the background). */
const START_WAIT_MS = 3000;

export interface Fleet {
  connection: FleetConnection;
  state: RedisSharedState;
  close(): Promise<void>;
}

/** Null when shared_state is empty (a process on its own). Throws one line on a bad URL or fleet name. */
export async function joinFleet(o: FleetOptions, log: Logger): Promise<Fleet | null> {
  if (!o.shared_state) return null;
  parseRedisUrl(o.shared_state);
  const fleet = checkFleetName(o.fleet);
  const connection = openFleetConnection({ url: o.shared_state, fleet, instance: instanceLabel(o.instance), fallback: o.shared_state_fallback as FleetFallback }, log);
  await connection.whenUp(START_WAIT_MS);
  const state = new RedisSharedState(connection, log);
  return {
    connection,
    state,
    close: async () => {
      await state.close();
      await closeFleetConnection();
    },
  };
}
