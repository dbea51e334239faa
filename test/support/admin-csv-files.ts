// neo4j-admin import CSV bundles for tests.

/** The movies example of the neo4j-admin import documentation: ID spaces, typed columns, arrays, :LABEL lists. */
export const DOCS_EXAMPLE = {
  'movies.csv': 'movieId:ID(Movie),title,year:int,genres:string[],:LABEL\n' + 'tt0133093,"The Matrix",1999,Action;Sci-Fi,Movie\n' + 'tt0234215,"The Matrix Reloaded",2003,Action,Movie;Sequel\n' + 'tt0242653,"The Matrix Revolutions",2003,,Movie;Sequel\n',
  'actors.csv': 'personId:ID(Actor),name,born:date,ratings:double[],:LABEL\n' + 'keanu,"Keanu Reeves",1964-09-02,9.5;8,Actor\n' + 'laurence,"Laurence Fishburne",,,Actor\n' + 'carrieanne,"Carrie-Anne Moss",1967-08-21,7.25,Actor\n',
  'roles.csv': ':START_ID(Actor),role,:END_ID(Movie),:TYPE\n' + 'keanu,"Neo",tt0133093,ACTED_IN\n' + 'keanu,"Neo",tt0234215,ACTED_IN\n' + 'laurence,"Morpheus",tt0133093,ACTED_IN\n' + 'carrieanne,"Trinity",tt0242653,ACTED_IN\n',
};
