import { Field, ObjectType } from 'type-graphql';
import { EngineVersionEnum } from '../enums';
import { DateTimeScalar, JSONObjectScalar } from '../scalars';
import { GraphStats } from './common.type';

@ObjectType({ simpleResolvers: true, description: 'what an uploaded file is and holds (inspectFile); nothing was changed to find out' })
export class FileInspection {
  @Field({
    description:
      'SNAPGRAPH_ARCHIVE, APOC_JSON, CYPHER, GRAPHML, NEO4J_ADMIN_CSV, NEO4J_DUMP, NEO4J_BACKUP, or\nUNKNOWN (a .tar holding one of them is reported as what it holds)',
  })
  kind: string;

  @Field({
    description:
      'true when restoreFromFile would accept it: every check one record, or the header and a count, can decide passed;\nthat ids are unique and that relationships end at nodes of the file is checked by the restore, once it holds\nthe whole graph',
  })
  restorable: boolean;

  @Field(() => GraphStats, { nullable: true, description: 'what it holds; null when that cannot be read' })
  contents: GraphStats | null;

  @Field(() => EngineVersionEnum, { nullable: true })
  engineVersion: string | null;

  @Field(() => DateTimeScalar, { nullable: true })
  capturedAt: string | null;

  @Field(() => JSONObjectScalar, {
    nullable: true,
    description:
      "facts from the file's own header, e.g. for a Neo4j dump or backup: database name, transaction range, full or differential",
  })
  details: Record<string, unknown> | null;

  @Field(() => String, { nullable: true, description: 'why it cannot be restored, in words a user can act on; null when restorable' })
  problem: string | null;
}
