-- framesift: scores.parquet goes to Storage beside the golden frame images, under
-- <scan_id>/scores.parquet, so the scores route and re-picks read it wherever the analysis ran.
-- The bucket accepts it (it accepted only JPEG and PNG). Safe to apply twice.
update storage.buckets
   set allowed_mime_types = array_append(allowed_mime_types, 'application/vnd.apache.parquet')
 where id = 'golden-frames'
   and allowed_mime_types is not null
   and not ('application/vnd.apache.parquet' = any (allowed_mime_types));
