// A player's morning, as a mobile app written against the generated client would do it:
// look at the own forest, collect what is ripe, then visit friends with energy to take.
// Type-checked in CI against types generated from Canopy's /openapi.json (never run there):
// if the contract changes under the app, this stops compiling.
import createClient from "openapi-fetch";
import type { operations, paths } from "./canopy";

type Json<Op extends keyof operations, Status extends keyof operations[Op]["responses"]> =
  operations[Op]["responses"][Status] extends { content: { "application/json": infer Body } }
    ? Body
    : never;

export type Forest = Json<"getOwnForest", 200>;
export type Collected = Json<"collectOwnForest", 200>;
export type Friends = Json<"listFriends", 200>;
export type TakenFromFriend = Json<"collectFriendForest", 200>;

export interface Morning {
  collectedOwnG: number;
  takenFromFriendsG: number;
  balanceG: number;
  visited: string[];
}

export async function morningRoutine(baseUrl: string, accessToken: string): Promise<Morning> {
  const canopy = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${accessToken}` },
  });

  const forest = await canopy.GET("/v1/forest", { params: { query: { all: false } } });
  if (!forest.data) {
    throw new Error(`GET /v1/forest failed with ${forest.response.status}`);
  }
  const ripe: string[] = forest.data.balls
    .filter((ball) => ball.state === "ripe" && ball.remaining_g > 0)
    .map((ball) => ball.id);

  let balanceG = forest.data.balance_g;
  let collectedOwnG = 0;
  if (ripe.length > 0) {
    const collected = await canopy.POST("/v1/forest/collect", {
      body: { ball_ids: ripe },
      params: { header: { "idempotency-key": `morning-${forest.data.now}` } },
    });
    if (collected.data) {
      collectedOwnG = collected.data.collected_g;
      balanceG = collected.data.balance_g;
      for (const result of collected.data.results) {
        if (result.status === "not_found") {
          console.warn(`ball ${result.ball_id} vanished`);
        }
      }
    }
  }

  const friends = await canopy.GET("/v1/friends");
  const worthAVisit = (friends.data?.friends ?? []).filter((friend) => friend.collectible_g > 0);
  let takenFromFriendsG = 0;
  const visited: string[] = [];
  for (const friend of worthAVisit) {
    const taken = await canopy.POST("/v1/friends/{user_id}/collect", {
      params: { path: { user_id: friend.id } },
      body: null, // every ball with something for me
    });
    if (taken.error) {
      continue; // unfriended meanwhile (404) or stealing is off (403): the morning goes on
    }
    takenFromFriendsG += taken.data.collected_g;
    balanceG = taken.data.balance_g;
    visited.push(friend.handle ?? friend.id);
  }

  return { collectedOwnG, takenFromFriendsG, balanceG, visited };
}
