/**
 * The row range of every row group of a Parquet file, in file order: what the readers of large
 * files (predictions, the report's tables) walk so that one group at a time is decoded.
 */
import type { FileMetaData } from 'hyparquet';

export interface RowGroupRange {
  rowStart: number;
  rowEnd: number;
}

export function* rowGroupRanges(metadata: FileMetaData): Generator<RowGroupRange> {
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    yield { rowStart, rowEnd };
    rowStart = rowEnd;
  }
}
