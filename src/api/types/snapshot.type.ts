import { Field, Float, ID, InputType, Int, ObjectType } from 'type-graphql';
import { ReadsVersionedRows } from '../response-cache';
import { ArchiveFormatEnum, EngineVersionEnum, SnapshotProfileEnum, SnapshotStatusEnum } from '../enums';
import { DateTimeScalar } from '../scalars';
import { GraphStats, PageInfo } from './common.type';

@ObjectType('Snapshot', { simpleResolvers: true })
export class Snapshot {
  @ReadsVersionedRows()
  @Field(() => ID) id: string;
  @ReadsVersionedRows()
  @Field(() => ID) instanceId: string;
  @ReadsVersionedRows()
  @Field(() => SnapshotProfileEnum) profile: string;
  @ReadsVersionedRows()
  @Field(() => SnapshotStatusEnum) status: string;
  @ReadsVersionedRows()
  @Field(() => DateTimeScalar, { description: 'the point in time the snapshot captures' }) createdAt: number;
  @ReadsVersionedRows()
  @Field(() => DateTimeScalar, { nullable: true }) completedAt: number | null;
  @ReadsVersionedRows()
  @Field(() => DateTimeScalar, {
    nullable: true,
    description:
      'when retention is due to remove it (a tier that thins its scheduled snapshots may remove one earlier; one a restore or a valid export link still reads goes once they are done); null when it is kept until replaced (FREE keeps the latest only, and every tier keeps an instance\'s newest completed snapshot, and its newest one verification has not found damaged, past its retention until a newer one not known to be damaged completes)',
  })
  expiresAt: number | null;
  @ReadsVersionedRows()
  @Field(() => String, { nullable: true }) description: string | null;
  @ReadsVersionedRows()
  @Field(() => Float, {
    nullable: true,
    description:
      'size of the export archive; set once the archive has been produced (at the first export or verification), then never changes',
  })
  sizeBytes: number | null;
  @ReadsVersionedRows()
  @Field(() => String, { nullable: true, description: 'hex SHA-256 of the export archive bytes; set when sizeBytes is, then never changes' })
  sha256: string | null;
  @ReadsVersionedRows()
  @Field(() => EngineVersionEnum) engineVersion: string;
  @ReadsVersionedRows()
  @Field(() => GraphStats, { nullable: true, description: 'what the snapshot holds, read without restoring it; null until COMPLETED' })
  contents: GraphStats | null;
  @ReadsVersionedRows()
  @Field(() => String, { nullable: true }) error: string | null;
  @ReadsVersionedRows()
  @Field(() => Float, {
    nullable: true,
    description: 'bytes at rest this snapshot added (data no earlier snapshot already holds); null until COMPLETED',
  })
  addedBytes: number | null;
  @ReadsVersionedRows()
  @Field(() => DateTimeScalar, { nullable: true, description: 'when the snapshot was last read back in full and found restorable; null if never' })
  verifiedAt: number | null;
}

@ObjectType('StorageUsage', { simpleResolvers: true })
export class StorageUsage {
  @Field(() => Int) snapshotCount: number;
  @Field(() => Float, {
    description:
      "what the snapshots' export archives add up to: the cost of keeping full copies (a snapshot whose archive was never produced counts its store's plain size)",
  })
  logicalBytes: number;
  @Field(() => Float, { description: 'what is really stored for them at rest, after deduplication, compression and encryption' })
  storedBytes: number;
}

@ObjectType({ simpleResolvers: true })
export class SnapshotEdge {
  @ReadsVersionedRows()
  @Field() cursor: string;
  @ReadsVersionedRows()
  @Field(() => Snapshot) node: Snapshot;
}

@ObjectType({ simpleResolvers: true })
export class SnapshotConnection {
  @ReadsVersionedRows()
  @Field(() => [SnapshotEdge]) edges: SnapshotEdge[];
  @ReadsVersionedRows()
  @Field(() => PageInfo) pageInfo: PageInfo;
  @ReadsVersionedRows()
  @Field(() => Int) totalCount: number;
}

@InputType({ description: 'Filters combine with AND. from/to bound createdAt, inclusive.' })
export class SnapshotFilter {
  @Field(() => DateTimeScalar, { nullable: true }) from?: Date;
  @Field(() => DateTimeScalar, { nullable: true }) to?: Date;
  @Field(() => SnapshotProfileEnum, { nullable: true }) profile?: SnapshotProfileEnum;
  @Field(() => SnapshotStatusEnum, { nullable: true }) status?: SnapshotStatusEnum;
}

@ObjectType({ simpleResolvers: true })
export class SnapshotExport {
  @Field({ description: 'absolute URL; GET streams the archive (Range supported) until expiresAt, without other credentials' })
  url: string;
  @Field({
    description: '<instance-name>-<YYYY-MM-DDTHH-MM-SSZ>.backup (V5) or .dump (V4), from the snapshot\'s createdAt in UTC',
  })
  fileName: string;
  @Field(() => DateTimeScalar) expiresAt: number;
  @Field(() => Float) sizeBytes: number;
  @Field() sha256: string;
}

export const formatOf = (engineVersion: string): ArchiveFormatEnum =>
  engineVersion === 'V4' ? ArchiveFormatEnum.DUMP : ArchiveFormatEnum.BACKUP;
